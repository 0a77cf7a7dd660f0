//! Archives in storage: the archive format (`crate::archive`) reads and writes byte streams;
//! this is where those streams come from and go to — a local file or an object, through
//! [`super::backend`] — and where an archive is signed by this home's writer key unless told
//! otherwise.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::archive::{ArchiveHeader, ArchiveReader, ArchiveWriter, Bytes, SecretKey, WriteOptions};
use crate::error::{Error, ErrorCode, Result};

use super::backend::{self, Backend};

/// An archive's bytes in storage.
struct Stored {
    at: Box<dyn Backend>,
    path: std::path::PathBuf,
}

impl Stored {
    fn missing(&self, e: Error) -> Error {
        if e.code == ErrorCode::NotFound {
            Error::not_found(format!("cannot open the archive {}: it does not exist", self.path.display()))
        } else {
            e
        }
    }
}

impl Bytes for Stored {
    fn size(&self) -> Result<u64> {
        self.at.size()?.ok_or_else(|| Error::not_found(format!("cannot open the archive {}: it does not exist", self.path.display())))
    }

    fn read_range(&self, offset: u64, len: u64) -> Result<Box<dyn Read + Send>> {
        self.at.read_range(offset, len).map_err(|e| self.missing(e))
    }
}

/// An archive's size: a local file's, or an object's.
pub fn byte_len(path: &Path) -> Result<u64> {
    Stored { at: backend::at(path)?, path: path.to_path_buf() }.size()
}

/// `len` bytes of an archive from `offset` (an object is fetched in ranges as it is read).
pub fn read_range(path: &Path, offset: u64, len: u64) -> Result<Box<dyn Read + Send>> {
    Stored { at: backend::at(path)?, path: path.to_path_buf() }.read_range(offset, len)
}

impl ArchiveReader {
    /// Opens the archive at `path` (a file or an object) and reads its plaintext header and
    /// trailer (no key needed).
    pub fn open(path: &Path) -> Result<Self> {
        let stored = Stored { at: backend::at(path)?, path: path.to_path_buf() };
        ArchiveReader::from_bytes(path, Arc::new(stored))
    }
}

impl ArchiveWriter {
    /// Starts an archive at `dest` (a file written beside its place and renamed into it when
    /// finished, or a multipart upload), signed by `options.signer` — this home's writer key when
    /// none is given.
    pub fn create(dest: &Path, header: &ArchiveHeader, key: Option<SecretKey>, options: WriteOptions) -> Result<Self> {
        let mut options = options;
        if options.signer.is_none() {
            options.signer = Some(crate::writers::WriterKey::of_default_home()?);
        }
        let sink = backend::at(dest)?.upload().map_err(|e| Error::new(e.code, format!("cannot write the archive {}: {}", dest.display(), e.message)).caused_by(&e))?;
        ArchiveWriter::to_sink(dest, sink, header, key, options)
    }
}
