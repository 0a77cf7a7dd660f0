//! The commands that act on a repository or an archive directly (backup, restore, verify, ls,
//! inspect, key): each as the signed-in operator, with its permission checked and its outcome
//! audited, before the catalog's own commands.

use crate::prelude::*;

pub(crate) async fn run(cli: &Cli) -> Result<bool, Error> {
    use safehold_core::keys::custody::{self, Adhoc};
    let no_keys = KeyArgs::default();
    let (what, place, keys) = match &cli.command {
        Command::Backup(a) => (Adhoc::Backup, &a.to, &a.keys),
        Command::Verify(a) if a.restore_test => (Adhoc::VerifyByRestoring, &a.target, &a.keys),
        Command::Verify(a) if a.deep => (Adhoc::VerifyDeep, &a.target, &a.keys),
        Command::Verify(a) => (Adhoc::Verify, &a.target, &a.keys),
        Command::Ls { repo } => (Adhoc::List, repo, &no_keys),
        Command::Inspect { archive, keys } => (Adhoc::Inspect, archive, keys),
        Command::Key(KeyCommand::ExportRecovery { repo, keys }) => (Adhoc::ExportRecovery, repo, keys),
        Command::Key(KeyCommand::Writers { repo, keys }) => (Adhoc::Writers, repo, keys),
        Command::Key(KeyCommand::ApproveWriter { repo, keys, .. }) => (Adhoc::ApproveWriter, repo, keys),
        // A configuration's protection (--config, or status without --repo): the catalog's commands.
        Command::Protect(ProtectCommand::Status(p) | ProtectCommand::Run { p, .. }) if p.repo.is_none() => return Ok(false),
        Command::Protect(ProtectCommand::Status(p)) => (Adhoc::List, super::protect::repo_of(p)?, &p.keys),
        Command::Protect(ProtectCommand::Restore { p, .. }) => (Adhoc::Restore, super::protect::repo_of(p)?, &p.keys),
        Command::Protect(ProtectCommand::Start(p) | ProtectCommand::Stop(p) | ProtectCommand::Run { p, .. }) => (Adhoc::Protect, super::protect::repo_of(p)?, &p.keys),
        Command::Restore(a) => {
            super::restore::run(cli, a).await?;
            return Ok(true);
        }
        _ => return Ok(false),
    };
    // Every one of them acts as the signed-in operator (once operators exist), with the
    // permission the engine says it needs checked and the outcome audited under their name.
    let ctx = open_catalog(cli).await?;
    let place = location_in(cli, &ctx, place).await?;
    let (who, keys) = custody::adhoc(&ctx, what, &place.display().to_string(), &key_sources(keys), Some(&place)).await?;
    let out = dispatch(cli, &place, keys).await;
    custody::adhoc_done(&ctx, &who, what, &place.display().to_string(), Some(&place), &out).await?;
    out.map(|()| true)
}

/// The command itself, once its place and keys are resolved.
async fn dispatch(cli: &Cli, place: &Path, keys: KeySources) -> Result<(), Error> {
    let json = cli.json;
    match &cli.command {
        Command::Backup(a) => super::backup::run(a, json, place, keys).await,
        Command::Protect(cmd) => super::protect::run(cmd, json, place, keys).await,
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
