//! Which process runs a job. Every process that records jobs in a catalog holds a lease there —
//! `HOME/leases/<id>.lock`, locked for as long as the process lives (the kernel lets go however
//! it ends) — and writes the lease's id into the rows of the jobs it runs. Start-up recovery
//! marks a job interrupted only when no live process holds its lease: a second process starting
//! a scheduler leaves a backup another process is running alone.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

static HELD: Mutex<BTreeMap<PathBuf, (String, File)>> = Mutex::new(BTreeMap::new());

fn dir(home: &Path) -> PathBuf {
    home.join("leases")
}

/// This process's lease in the catalog under `home` (taken on first use).
pub fn runner(home: &Path) -> Result<String> {
    let key = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    let mut held = HELD.lock().map_err(|_| Error::new(crate::error::ErrorCode::Internal, "the lease lock is poisoned"))?;
    if let Some((id, _)) = held.get(&key) {
        return Ok(id.clone());
    }
    let d = dir(home);
    crate::private::create_dir_all(&d).map_err(|e| Error::io(format!("cannot create {}", d.display()), &e))?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let path = d.join(format!("{id}.lock"));
    let f = crate::private::create_new(&path).map_err(|e| Error::io(format!("cannot create {}", path.display()), &e))?;
    crate::private::lock(&f).map_err(|e| Error::io(format!("cannot lock {}", path.display()), &e))?;
    held.insert(key, (id.clone(), f));
    Ok(id)
}

/// Whether a live process holds the lease `id` (none recorded: a row from before leases, or one
/// whose process never took one — not alive).
pub fn alive(home: &Path, id: Option<&str>) -> bool {
    id.filter(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_alphanumeric())).is_some_and(|i| crate::private::is_held(&dir(home).join(format!("{i}.lock"))))
}

/// Removes the lease files of processes that are gone.
pub fn sweep(home: &Path) {
    let Ok(entries) = std::fs::read_dir(dir(home)) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "lock") && !crate::private::is_held(&p) {
            let _ = std::fs::remove_file(&p);
        }
    }
}
