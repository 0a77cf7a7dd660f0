//! `safehold key …`: repository keys and the writers whose archives restore.

use crate::prelude::*;

/// Who wrote a repository's archives, and whether each writer is approved.
pub(crate) async fn writers(json: bool, place: &Path) -> Result<(), Error> {
    let repo = Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", place.display())))?;
    let rows = repo.writers()?;
    if json {
        print_json(&rows);
    } else {
        for w in &rows {
            println!("{}  {:<32} {}", w.public_key, w.name, if w.approved { format!("approved, {} backups", w.backups) } else { format!("NOT approved: its {} backups do not restore", w.backups) });
        }
    }
    Ok(())
}

/// A writer approved: its archives restore.
pub(crate) async fn approve_writer(writer: &str, place: &Path, keys: KeySources) -> Result<(), Error> {
    let mut repo = Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", place.display())))?;
    let w = repo.writer_by_prefix(writer)?;
    let mk = keys.unlock_repository(&repo).await?;
    let added = repo.approve_writer(&mk, &w.public_key, &w.name)?;
    println!("{} {} ({})", if added { "approved" } else { "already approved:" }, w.name, w.public_key);
    Ok(())
}

/// The recovery kit printed once, then forgotten by the repository.
pub(crate) async fn export_recovery(place: &Path, keys: KeySources) -> Result<(), Error> {
    let mut repository = Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", place.display())))?;
    let mk = keys.unlock_repository(&repository).await?;
    // Printed (and the output flushed) before the repository forgets it: a kit that
    // could not be written out is not lost.
    let kit = repository.recovery_kit(&mk)?;
    let mut out = std::io::stdout().lock();
    out.write_all(kit.as_bytes()).and_then(|()| out.flush()).map_err(|e| Error::io("cannot write the recovery kit to the standard output (the repository still keeps it)", &e))?;
    repository.forget_recovery()?;
    Ok(())
}
