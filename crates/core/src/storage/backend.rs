//! One interface to the places archives live: a local folder, or an object store (S3, Azure
//! Blob, Google Cloud Storage — [`crate::remote`]). Everything that lists, reads, writes or
//! deletes archives and repository files goes through [`at`] and the [`Backend`] it gives, so a
//! new kind of storage is one more implementation of this trait, and the conformance suite
//! (`tests/engine/objstore.rs`) runs on each.
//!
//! The promises every backend keeps:
//! - a `put` or an `upload` is all-or-nothing: until it completes nobody sees the object, and
//!   one dropped before [`Upload::finish`] leaves nothing behind;
//! - `size` of what does not exist is `None` (not an error), and so is `delete` of it;
//! - `list` gives everything below a location (at any depth), as (location, size), in order.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorCode, Result};

/// A place in a storage: an object (or file), or — for `list` — a prefix (or folder).
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The location as messages and the catalog show it (a path or a URL).
    fn location(&self) -> String;
    /// The place `rel` below this one.
    fn child(&self, rel: &str) -> Box<dyn Backend>;
    /// Its size; `None` when it does not exist.
    fn size(&self) -> Result<Option<u64>>;
    /// `len` bytes from `offset`, read as they are consumed (an object is fetched in ranges).
    fn read_range(&self, offset: u64, len: u64) -> Result<Box<dyn Read + Send>>;
    /// Replaces it whole, atomically.
    fn put(&self, data: Vec<u8>) -> Result<()>;
    /// A streaming write that appears only when finished.
    fn upload(&self) -> Result<Box<dyn Upload>>;
    /// Removes it; nothing to remove is not an error.
    fn delete(&self) -> Result<()>;
    /// Everything below it: (location, size), in order.
    fn list(&self) -> Result<Vec<(String, u64)>>;

    /// Whether the place is there to be written into (a local folder must exist — a storage on a
    /// disk that is not mounted must not be created empty on the disk beneath).
    fn ready(&self) -> Result<()> {
        Ok(())
    }

    /// (capacity, available) in bytes, where the storage tells.
    fn capacity(&self) -> (Option<i64>, Option<i64>) {
        (None, None)
    }

    /// Makes the place able to hold children: a local folder is created with its parents (0700);
    /// an object store's prefixes exist as soon as an object is written under them.
    fn make_dir(&self) -> Result<()> {
        Ok(())
    }

    /// Removes what writers killed part-way left in this folder (a local folder's `*.partial`
    /// files that no live process is writing); returns their names. An object store keeps no
    /// such parts: an unfinished upload is never an object (its crash markers are swept apart).
    fn sweep_partials(&self) -> Vec<String> {
        Vec::new()
    }

    /// Its whole content.
    fn get(&self) -> Result<Vec<u8>> {
        let len = self.size()?.ok_or_else(|| Error::not_found(format!("{} does not exist", self.location())))?;
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        self.read_range(0, len)?.read_to_end(&mut out).map_err(|e| Error::io(format!("cannot read {}", self.location()), &e))?;
        Ok(out)
    }
}

/// A write under way: [`Write`] the bytes, then [`finish`](Upload::finish); dropped unfinished,
/// nothing is left. (The archive writer's [`Sink`](crate::archive::Sink).)
pub use crate::archive::Sink as Upload;

/// The files (or objects) directly in `dir` (a folder or a cloud storage's prefix), not in its
/// subfolders, with their sizes, by name.
pub fn listed_in(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    Ok(at(dir)?.list()?.into_iter().map(|(l, n)| (PathBuf::from(l), n)).filter(|(p, _)| p.parent() == Some(dir)).collect())
}

/// The backend for `location`: an object store for `s3://`, `az://` and `gs://` URLs, else the
/// local filesystem.
pub fn at(location: &Path) -> Result<Box<dyn Backend>> {
    if crate::remote::is_remote(location) {
        Ok(Box::new(ObjectBackend(crate::remote::object(location)?)))
    } else {
        Ok(Box::new(Local(location.to_path_buf())))
    }
}

/// A file or folder of the local filesystem. Files are written under a temporary name beside
/// their place (0600, locked while written) and renamed into place.
#[derive(Debug, Clone)]
pub struct Local(pub PathBuf);

fn io_code(e: &std::io::Error) -> ErrorCode {
    if e.kind() == std::io::ErrorKind::NotFound {
        ErrorCode::NotFound
    } else {
        ErrorCode::Io
    }
}

impl Local {
    fn make_parent(&self) -> Result<()> {
        match self.0.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => crate::private::create_dir_all(dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), &e)),
            _ => Ok(()),
        }
    }
}

impl Backend for Local {
    fn location(&self) -> String {
        self.0.display().to_string()
    }

    fn child(&self, rel: &str) -> Box<dyn Backend> {
        Box::new(Local(self.0.join(rel)))
    }

    fn ready(&self) -> Result<()> {
        if self.0.is_dir() {
            Ok(())
        } else {
            Err(Error::not_found(format!("{} does not exist or is not a directory; mount the storage or fix its path", self.0.display())))
        }
    }

    fn capacity(&self) -> (Option<i64>, Option<i64>) {
        super::filesystem_space(&self.0)
    }

    fn sweep_partials(&self) -> Vec<String> {
        crate::private::sweep_partials(&self.0)
    }

    fn make_dir(&self) -> Result<()> {
        crate::private::create_dir_all(&self.0).map_err(|e| Error::io(format!("cannot create the folder {}", self.0.display()), &e))
    }

    fn size(&self) -> Result<Option<u64>> {
        match std::fs::metadata(&self.0) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("cannot read the size of {}", self.0.display()), &e)),
        }
    }

    fn read_range(&self, offset: u64, len: u64) -> Result<Box<dyn Read + Send>> {
        let mut f = File::open(&self.0).map_err(|e| Error::new(io_code(&e), format!("cannot open {}: {e}", self.0.display())).caused_by(&e))?;
        f.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(self.0.display(), &e))?;
        Ok(Box::new(f.take(len)))
    }

    fn put(&self, data: Vec<u8>) -> Result<()> {
        self.make_parent()?;
        let tmp = crate::private::partial_beside(&self.0);
        crate::private::write(&tmp, &data).map_err(|e| Error::io(format!("cannot write {}", tmp.display()), &e))?;
        std::fs::rename(&tmp, &self.0).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!("cannot write {}", self.0.display()), &e)
        })
    }

    fn upload(&self) -> Result<Box<dyn Upload>> {
        self.make_parent()?;
        let tmp = crate::private::partial_beside(&self.0);
        let file = crate::private::create_new(&tmp).map_err(|e| Error::io(format!("cannot create {}", tmp.display()), &e))?;
        crate::private::lock(&file).map_err(|e| Error::io(format!("cannot lock {}", tmp.display()), &e))?;
        Ok(Box::new(LocalUpload { file: Some(file), tmp, dest: self.0.clone() }))
    }

    fn delete(&self) -> Result<()> {
        match std::fs::remove_file(&self.0) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("cannot delete {}", self.0.display()), &e)),
        }
    }

    fn list(&self) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut dirs = vec![self.0.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("cannot list {}", dir.display()), &e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), &e))?;
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    // Gone since the folder was read (a writer's part renamed into place, or a
                    // file deleted meanwhile): not in this listing.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(format!("cannot read {}", entry.path().display()), &e)),
                };
                if meta.is_dir() {
                    dirs.push(entry.path());
                } else {
                    out.push((entry.path().display().to_string(), meta.len()));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

struct LocalUpload {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl Write for LocalUpload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().ok_or_else(|| std::io::Error::other("the upload is closed"))?.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().ok_or_else(|| std::io::Error::other("the upload is closed"))?.flush()
    }
}

impl Upload for LocalUpload {
    fn finish(mut self: Box<Self>) -> Result<()> {
        let file = self.file.take().ok_or_else(|| Error::new(ErrorCode::Internal, "the upload is closed"))?;
        // Renamed while still open (and so locked): a sweep of leftovers never sees it unheld.
        let done = file.sync_all().and_then(|()| std::fs::rename(&self.tmp, &self.dest));
        drop(file);
        done.map_err(|e| Error::io(format!("cannot write {}", self.dest.display()), &e))?;
        if let Some(dir) = self.dest.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // Unfinished (or failed): nothing stays behind.
        if self.file.take().is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// An object (or prefix) of an object store.
#[derive(Debug, Clone)]
pub struct ObjectBackend(pub crate::remote::Object);

impl Backend for ObjectBackend {
    fn location(&self) -> String {
        self.0.url.clone()
    }

    fn child(&self, rel: &str) -> Box<dyn Backend> {
        Box::new(ObjectBackend(self.0.child(rel)))
    }

    fn size(&self) -> Result<Option<u64>> {
        self.0.size()
    }

    fn read_range(&self, offset: u64, len: u64) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.0.reader(offset, len)))
    }

    fn put(&self, data: Vec<u8>) -> Result<()> {
        self.0.put(data)
    }

    fn upload(&self) -> Result<Box<dyn Upload>> {
        Ok(Box::new(self.0.upload()?))
    }

    fn delete(&self) -> Result<()> {
        self.0.delete()
    }

    fn list(&self) -> Result<Vec<(String, u64)>> {
        self.0.list()
    }

    fn get(&self) -> Result<Vec<u8>> {
        self.0.get()
    }
}

impl Upload for crate::remote::Upload {
    fn finish(self: Box<Self>) -> Result<()> {
        crate::remote::Upload::finish(*self)
    }
}
