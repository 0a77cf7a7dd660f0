//! Writing an archive in one pass. The file is written under a temporary name and renamed into
//! place only when complete, so a failed or cancelled backup leaves nothing behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use aead_stream::{NewStream, StreamBE32, StreamPrimitive};
use aes_gcm::aead::Payload;
use aes_gcm::Aes256Gcm;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{chunk_aad, ArchiveHeader, ArchiveIndex, SectionEntry, SecretKey, CHUNK_SIZE, FORMAT_VERSION, MAGIC, TRAILER_MAGIC};
use crate::error::{Error, ErrorCode, Result};

#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// zstd level; `None` stores chunks uncompressed.
    pub zstd_level: Option<i32>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self { zstd_level: Some(3) }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct WrittenArchive {
    pub path: PathBuf,
    pub bytes: u64,
    pub raw_bytes: u64,
    pub sha256: String,
    pub index: ArchiveIndex,
}

/// A file writer that counts and hashes everything written.
struct Hashing {
    out: BufWriter<File>,
    hash: Sha256,
    pos: u64,
}

impl Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.hash.update(bytes);
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

pub struct ArchiveWriter {
    file: Hashing,
    tmp: PathBuf,
    dest: PathBuf,
    key: Option<SecretKey>,
    header_hash: [u8; 32],
    options: WriteOptions,
    index: ArchiveIndex,
    raw_bytes: u64,
    finished: bool,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    let hint = if e.raw_os_error() == Some(28) { "; the disk is full — free space or choose another storage" } else { "" };
    Error::new(ErrorCode::Io, format!("cannot write the archive {}: {e}{hint}", path.display()))
}

impl ArchiveWriter {
    /// Starts an archive at `dest` (written as `dest.partial` until [`finish`](Self::finish)).
    /// `key` is the archive's data key, `None` for an unencrypted archive.
    pub fn create(dest: &Path, header: &ArchiveHeader, key: Option<SecretKey>, options: WriteOptions) -> Result<Self> {
        let tmp = dest.with_extension("partial");
        let f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        let mut file = Hashing { out: BufWriter::with_capacity(1 << 20, f), hash: Sha256::new(), pos: 0 };
        let header_json = serde_json::to_vec(header).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        let header_hash: [u8; 32] = Sha256::digest(&header_json).into();
        let mut w = || -> std::io::Result<()> {
            file.write(MAGIC)?;
            file.write(&FORMAT_VERSION.to_be_bytes())?;
            file.write(&u32::try_from(header_json.len()).unwrap_or(u32::MAX).to_be_bytes())?;
            file.write(&header_json)
        };
        w().map_err(|e| io(&tmp, e))?;
        Ok(Self { file, tmp, dest: dest.to_path_buf(), key, header_hash, options, index: ArchiveIndex::default(), raw_bytes: 0, finished: false })
    }

    /// Starts the next section. Sections are written one after the other.
    pub fn section(&mut self, name: &str, kind: &str) -> SectionWriter<'_> {
        let no = u32::try_from(self.index.sections.len()).unwrap_or(u32::MAX - 1);
        self.section_numbered(name, kind, no)
    }

    fn section_numbered(&mut self, name: &str, kind: &str, section_no: u32) -> SectionWriter<'_> {
        let mut nonce = [0u8; 7];
        rand::rng().fill_bytes(&mut nonce);
        let offset = self.file.pos;
        SectionWriter {
            stream: self.key.as_ref().map(|k| StreamBE32::<Aes256Gcm>::from_aead(k.cipher(), &nonce.into())),
            archive: self,
            name: name.to_string(),
            kind: kind.to_string(),
            nonce,
            section_no,
            offset,
            buf: Vec::with_capacity(CHUNK_SIZE),
            frames: 0,
            plain: 0,
            hash: Sha256::new(),
            rows: 0,
            mode: None,
        }
    }

    pub fn index_mut(&mut self) -> &mut ArchiveIndex {
        &mut self.index
    }

    /// Writes the index and the trailer, flushes, syncs and renames the file into place.
    pub fn finish(mut self) -> Result<WrittenArchive> {
        let index_json = serde_json::to_vec(&self.index).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        let mut sec = self.section_numbered("index", "index", super::INDEX_SECTION_NO);
        sec.write(&index_json)?;
        let entry = sec.close_entry()?;
        let index_nonce = hex::decode(&entry.nonce).unwrap_or_default();
        let body_hash: [u8; 32] = self.file.hash.clone().finalize().into();
        let mut trailer = Vec::with_capacity(super::TRAILER_LEN);
        trailer.extend_from_slice(TRAILER_MAGIC);
        trailer.extend_from_slice(&entry.offset.to_be_bytes());
        trailer.extend_from_slice(&entry.length.to_be_bytes());
        trailer.extend_from_slice(&entry.frames.to_be_bytes());
        trailer.extend_from_slice(&index_nonce);
        trailer.extend_from_slice(&body_hash);
        let mac = trailer_mac(self.key.as_ref(), &self.header_hash, &trailer);
        trailer.extend_from_slice(&mac);
        let tmp = self.tmp.clone();
        self.file.write(&trailer).map_err(|e| io(&tmp, e))?;
        self.file.out.flush().map_err(|e| io(&tmp, e))?;
        self.file.out.get_ref().sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| io(&self.dest, e))?;
        if let Some(dir) = self.dest.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.finished = true;
        let sha = hex::encode(self.file.hash.clone().finalize());
        Ok(WrittenArchive { path: self.dest.clone(), bytes: self.file.pos, raw_bytes: self.raw_bytes, sha256: sha, index: self.index.clone() })
    }
}

impl Drop for ArchiveWriter {
    /// An archive that was not finished is removed: no partial archive is ever left behind.
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The trailer's authenticator: SHA-256 over a key derived from the data key (when encrypted),
/// the header hash and the trailer's fixed-length fields.
pub(crate) fn trailer_mac(key: Option<&SecretKey>, header_hash: &[u8; 32], fields: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"safehold-trailer\0");
    if let Some(k) = key {
        h.update(k.derive("trailer-mac").0);
    }
    h.update(header_hash);
    h.update(fields);
    h.finalize().into()
}

/// Writes one section: buffers plaintext into chunks, compresses and seals each.
pub struct SectionWriter<'a> {
    archive: &'a mut ArchiveWriter,
    stream: Option<StreamBE32<Aes256Gcm>>,
    name: String,
    kind: String,
    nonce: [u8; 7],
    section_no: u32,
    offset: u64,
    buf: Vec<u8>,
    frames: u32,
    plain: u64,
    hash: Sha256,
    rows: u64,
    mode: Option<String>,
}

impl SectionWriter<'_> {
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.hash.update(data);
        self.plain += data.len() as u64;
        while !data.is_empty() {
            let take = (CHUNK_SIZE - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK_SIZE && !data.is_empty() {
                self.flush_chunk(false)?;
            }
        }
        Ok(())
    }

    /// Marks the section as holding only changed rows (see [`SectionEntry::mode`]).
    pub fn set_mode(&mut self, mode: &str) {
        self.mode = Some(mode.to_string());
    }

    pub fn add_rows(&mut self, n: u64) {
        self.rows += n;
    }

    fn flush_chunk(&mut self, last: bool) -> Result<()> {
        let plain = std::mem::take(&mut self.buf);
        self.buf.reserve(CHUNK_SIZE);
        let packed = match self.archive.options.zstd_level {
            Some(level) => zstd::bulk::compress(&plain, level)
                .map_err(|e| Error::new(ErrorCode::Internal, format!("zstd failed: {e}")))?,
            None => plain,
        };
        let frame = match &self.stream {
            Some(s) => {
                let aad = chunk_aad(&self.archive.header_hash, self.section_no);
                s.encrypt(self.frames, last, Payload { msg: &packed, aad: &aad })
                    .map_err(|_| Error::new(ErrorCode::Internal, "AES-GCM encryption failed"))?
            }
            None => packed,
        };
        let tmp = self.archive.tmp.clone();
        let len = u32::try_from(frame.len()).map_err(|_| Error::new(ErrorCode::Internal, "frame too large"))?;
        self.archive.file.write(&len.to_be_bytes()).map_err(|e| io(&tmp, e))?;
        self.archive.file.write(&frame).map_err(|e| io(&tmp, e))?;
        self.frames += 1;
        Ok(())
    }

    fn close_entry(&mut self) -> Result<SectionEntry> {
        self.flush_chunk(true)?;
        Ok(SectionEntry {
            name: self.name.clone(),
            kind: self.kind.clone(),
            offset: self.offset,
            length: self.archive.file.pos - self.offset,
            frames: self.frames,
            nonce: hex::encode(self.nonce),
            plain_bytes: self.plain,
            sha256: hex::encode(self.hash.clone().finalize()),
            rows: self.rows,
            mode: self.mode.clone(),
        })
    }

    /// Ends the section and records it in the index.
    pub fn finish(mut self) -> Result<SectionEntry> {
        let entry = self.close_entry()?;
        self.archive.raw_bytes += entry.plain_bytes;
        self.archive.index.sections.push(entry.clone());
        Ok(entry)
    }
}
