//! Files and folders Safehold writes are its user's alone: folders 0700, files 0600, set when
//! they are created whatever the umask (the umask can only take more away). Catalogs, archives,
//! exports, restored SQLite files and keys alike: they hold tenants' data or what opens it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Creates `dir` and its missing parents, each new one 0700.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

/// Creates (or truncates) `path`, 0600 when new.
pub fn create(path: &Path) -> std::io::Result<File> {
    let f = options().create(true).truncate(true).open(path)?;
    restrict(path)?;
    Ok(f)
}

/// Creates `path`, which must not exist yet, 0600.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    options().create_new(true).open(path)
}

/// Writes `data` to `path` (created 0600, or truncated), synced.
pub fn write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Takes an existing file's or folder's access from everybody but its owner (a file made
/// before, or by a library that does not say).
pub fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)?;
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { mode & 0o700 } else { mode & 0o600 };
        if want != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))?;
        }
    }
    Ok(())
}

/// A file beside `dest` to write into before it is renamed onto `dest`: a name of its own, so
/// that nothing else's file is overwritten or deleted; `*.partial`, so that a leftover is found.
pub fn partial_beside(dest: &Path) -> std::path::PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    dest.with_file_name(format!("{name}.{}.partial", &tag[..12]))
}

/// Holds an exclusive lock on an open file for as long as it is open: a `.partial` file being
/// written, a job's lease. The kernel lets go when the process ends, however it ends.
pub fn lock(f: &File) -> std::io::Result<()> {
    #[cfg(unix)]
    rustix::fs::flock(f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(std::io::Error::from)?;
    Ok(())
}

/// Whether the file at `path` is held by a live process's [`lock`] (false when nobody holds it,
/// or it is gone).
pub fn is_held(path: &Path) -> bool {
    let Ok(f) = OpenOptions::new().read(true).open(path) else { return false };
    #[cfg(unix)]
    {
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Ok(()) => {
                let _ = rustix::fs::flock(&f, rustix::fs::FlockOperation::Unlock);
                false
            }
            Err(_) => true,
        }
    }
    #[cfg(not(unix))]
    {
        drop(f);
        false
    }
}

/// Removes the `*.partial` files in `dir` that no live process is writing (left by a process
/// that was killed); returns their names.
pub fn sweep_partials(dir: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return removed };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".partial") && path.is_file() && !is_held(&path) && std::fs::remove_file(&path).is_ok() {
            removed.push(name);
        }
    }
    removed
}

/// Where the Safehold home is, when not the OS data directory.
pub const HOME_ENV: &str = "SAFEHOLD_HOME";

/// The Safehold home: `SAFEHOLD_HOME`, else the OS data directory for the app
/// (`~/.local/share/safehold` on Linux).
pub fn default_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os(HOME_ENV).filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    directories::ProjectDirs::from("dev", "safehold", "safehold")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or_else(|| Error::validation(format!("cannot find a home directory for Safehold's data; set {HOME_ENV}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_and_folders_are_the_owners_alone_whatever_the_umask() {
        let old = rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o000));
        let dir = tempfile::tempdir().expect("tmp");
        let nested = dir.path().join("a/b");
        create_dir_all(&nested).expect("dirs");
        write(&nested.join("f"), b"x").expect("write");
        rustix::process::umask(old);
        for p in [dir.path().join("a"), nested.clone()] {
            assert_eq!(std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o700, "{}", p.display());
        }
        assert_eq!(std::fs::metadata(nested.join("f")).expect("meta").permissions().mode() & 0o777, 0o600);
        // A file made before is restricted.
        let open = dir.path().join("open");
        std::fs::write(&open, b"x").expect("write");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        restrict(&open).expect("restrict");
        assert_eq!(std::fs::metadata(&open).expect("meta").permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_partial_file_held_by_a_writer_is_kept_and_a_leftover_is_removed() {
        let dir = tempfile::tempdir().expect("tmp");
        let held = partial_beside(&dir.path().join("x.shar"));
        let f = create_new(&held).expect("create");
        lock(&f).expect("lock");
        let left = dir.path().join("y.shar.abc.partial");
        std::fs::write(&left, b"x").expect("write");
        let other = dir.path().join("x.partial");
        // (Not ours by name? It ends in .partial and nobody holds it: a leftover too.)
        std::fs::write(&other, b"x").expect("write");
        let mut removed = sweep_partials(dir.path());
        removed.sort();
        assert_eq!(removed, vec!["x.partial".to_string(), "y.shar.abc.partial".to_string()]);
        assert!(held.exists(), "the one being written stays");
        drop(f);
        assert_eq!(sweep_partials(dir.path()).len(), 1, "once its writer lets go");
    }
}
