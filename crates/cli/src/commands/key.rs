//! `safehold key …`: repository keys and the writers whose archives restore.

use crate::prelude::*;

/// Who wrote a repository's archives, and whether each writer is approved.
pub(crate) async fn writers(json: bool, place: &Path) -> Result<(), Error> {
    let repo = Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", place.display())))?;
    let listed = repo.config.writers.clone().unwrap_or_default().list;
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    for (_, h) in repo.list()? {
        if let Some(w) = h.writer {
            seen.insert(w.public_key, w.name);
        }
    }
    let rows: Vec<serde_json::Value> = listed
        .iter()
        .map(|w| serde_json::json!({ "public_key": w.public_key, "name": w.name, "approved": true, "approved_at": w.approved_at }))
        .chain(seen.iter().filter(|(k, _)| !listed.iter().any(|w| &w.public_key == *k)).map(|(k, n)| serde_json::json!({ "public_key": k, "name": n, "approved": false })))
        .collect();
    if json {
        print_json(&rows);
    } else {
        for r in &rows {
            println!("{}  {:<32} {}", r["public_key"].as_str().unwrap_or_default(), r["name"].as_str().unwrap_or_default(), if r["approved"] == true { "approved" } else { "NOT approved: its backups do not restore" });
        }
    }
    Ok(())
}

/// A writer approved: its archives restore.
pub(crate) async fn approve_writer(writer: &str, place: &Path, keys: KeySources) -> Result<(), Error> {
    let mut repo = Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", place.display())))?;
    let prefix = writer.trim().to_ascii_lowercase();
    let mut found: Vec<(String, String)> = Vec::new();
    for (_, h) in repo.list()? {
        if let Some(w) = h.writer.filter(|w| prefix.len() >= 8 && w.public_key.starts_with(&prefix)) {
            if !found.iter().any(|(k, _)| *k == w.public_key) {
                found.push((w.public_key, w.name));
            }
        }
    }
    let (key, name) = match found.as_slice() {
        [one] => one.clone(),
        [] => return Err(Error::not_found(format!("no archive in {} was written by a key starting {prefix} (give at least 8 characters, as `safehold key writers` shows)", place.display()))),
        _ => return Err(Error::validation(format!("{prefix} starts several writers' keys: give more of it"))),
    };
    let mk = keys.unlock_repository(&repo).await?;
    let added = repo.approve_writer(&mk, &key, &name)?;
    println!("{} {name} ({key})", if added { "approved" } else { "already approved:" });
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
