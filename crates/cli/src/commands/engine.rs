//! The commands that act on a repository or an archive directly (backup, restore, verify, ls,
//! inspect, key): each as the signed-in operator, with its permission checked and its outcome
//! audited, before the catalog's own commands.

use crate::prelude::*;

pub(crate) async fn run(cli: &Cli) -> Result<bool, Error> {
    let no_keys = KeyArgs::default();
    let (permission, action, place, keys) = match &cli.command {
        Command::Backup(a) => (Permission::TriggerManual, "backup.adhoc", &a.to, &a.keys),
        Command::Verify(a) if a.restore_test => (Permission::RestoreData, "backup.verify_restore", &a.target, &a.keys),
        Command::Verify(a) if a.deep => (Permission::RestoreData, "backup.verify_deep", &a.target, &a.keys),
        Command::Verify(a) => (Permission::TriggerManual, "backup.verify", &a.target, &a.keys),
        Command::Ls { repo } => (Permission::ViewHistory, "backup.list", repo, &no_keys),
        Command::Inspect { archive, keys } => (Permission::ViewHistory, "backup.inspect", archive, keys),
        Command::Key(KeyCommand::ExportRecovery { repo, keys }) => (Permission::RestoreData, "key.export_recovery", repo, keys),
        Command::Key(KeyCommand::Writers { repo, keys }) => (Permission::ViewHistory, "key.writers", repo, keys),
        Command::Key(KeyCommand::ApproveWriter { repo, keys, .. }) => (Permission::RestoreData, "key.approve_writer", repo, keys),
        Command::Restore(a) => {
            super::restore::run(cli, a).await?;
            return Ok(true);
        }
        _ => return Ok(false),
    };
    // Every one of them acts as the signed-in operator (once operators exist), with that
    // operator's permission checked and the outcome audited under their name.
    let ctx = open_catalog(cli).await?;
    let place = location_in(cli, &ctx, place).await?;
    let (who, keys) = safehold_core::custody::adhoc(&ctx, permission, action, &place.display().to_string(), &key_sources(keys), Some(&place)).await?;
    let out = dispatch(cli, &place, keys).await;
    if !matches!(cli.command, Command::Ls { .. } | Command::Inspect { .. }) || out.is_err() {
        safehold_core::custody::adhoc_done(&ctx, &who, action, &place.display().to_string(), Some(&place), &out).await?;
    }
    out.map(|()| true)
}

/// The command itself, once its place and keys are resolved.
async fn dispatch(cli: &Cli, place: &Path, keys: KeySources) -> Result<(), Error> {
    let json = cli.json;
    match &cli.command {
        Command::Backup(a) => super::backup::run(a, json, place, keys).await,
        Command::Verify(a) if a.restore_test => super::verify::restore_test(a, json, place, keys).await,
        Command::Verify(a) => super::verify::check(a, json, place, keys, cli.home.as_deref()).await,
        Command::Ls { .. } => super::verify::ls(json, place).await,
        Command::Inspect { .. } => super::verify::inspect(json, place, keys).await,
        Command::Key(KeyCommand::Writers { .. }) => super::key::writers(json, place).await,
        Command::Key(KeyCommand::ApproveWriter { writer, .. }) => super::key::approve_writer(writer, place, keys).await,
        Command::Key(KeyCommand::ExportRecovery { .. }) => super::key::export_recovery(place, keys).await,
        _ => Ok(()),
    }
}
