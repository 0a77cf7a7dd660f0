//! `safehold catalog …`: the catalog rebuilt from what storage holds.

use crate::prelude::*;

pub(crate) async fn run(ctx: &Ctx, json: bool, cmd: CatalogCommand, given_home: Option<&Path>, endpoint: Option<&str>, region: Option<&str>, operator: Option<&str>) -> Result<(), Error> {
    match cmd {
        CatalogCommand::Rebuild { from } => {
            let report = safehold_core::recovery::rebuild_catalog(ctx, &location_with(given_home, endpoint, region, operator, &from).await?).await?;
            if json {
                print_json(&report);
            } else {
                println!(
                    "{} backups recorded from {} ({} already known){}; restore any of them with its repository's recovery key (--recovery-key-file)",
                    report.added,
                    report.repository,
                    report.already_known,
                    if report.storage_added { format!("; registered as the storage \"{}\"", report.storage_name) } else { String::new() }
                );
                for u in &report.unreadable {
                    eprintln!("warning: not a readable archive: {u}");
                }
            }
        }
    }
    Ok(())
}
