//! `safehold demo`: the embedded demo platform.

use crate::prelude::*;

/// Creates the demo platform if it is not there (and, with `--postgres`, its copy in PostgreSQL).
pub(crate) async fn run(ctx: &Ctx, json: bool, postgres: Option<String>) -> Result<(), Error> {
    let report = demo::ensure(ctx, true).await?;
    let copied = match &postgres {
        Some(url) => Some(demo::put_on_postgres(ctx, url).await?),
        None => None,
    };
    if json {
        let mut out = serde_json::to_value(&report).unwrap_or_default();
        if let (Some(pg), Some(map)) = (&copied, out.as_object_mut()) {
            map.insert("postgres_rows".into(), pg.rows.into());
            map.insert("postgres_configuration".into(), pg.configuration.clone().into());
        }
        print_json(&out);
    } else {
        if report.created {
            println!("demo platform ready at {} ({} tenants, {} rows)", report.database_path, report.tenants, report.rows);
        } else {
            println!("the demo platform is already set up at {}", report.database_path);
        }
        if let Some(pg) = copied {
            println!("copied into PostgreSQL {} ({} rows), registered as the connection \"{}\" with the backup configuration \"{}\"", pg.database, pg.rows, pg.connection, pg.configuration);
        }
    }
    Ok(())
}
