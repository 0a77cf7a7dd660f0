//! Reading an archive: the plaintext header, the trailer, then (with a key) the index and any
//! section by its offset, without reading the others. Every failure names the archive, the
//! section and what is wrong.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use aead_stream::{NewStream, StreamBE32, StreamPrimitive};
use aes_gcm::aead::Payload;
use aes_gcm::Aes256Gcm;
use sha2::{Digest, Sha256};

use super::keys::{self, SecretKey, Unlock};
use super::writer::trailer_mac;
use super::{chunk_aad, ArchiveHeader, ArchiveIndex, KeySlot, SectionEntry, CHUNK_SIZE, FORMAT_VERSION, INDEX_SECTION_NO, MIN_FORMAT_VERSION, MAGIC, MAX_FRAME, SIGNATURE_LEN, SIGNATURE_MAGIC, SIGNED_FORMAT_VERSION, TRAILER_LEN, TRAILER_MAGIC};
use crate::error::{Error, ErrorCode, Result};

/// The trailer's fields.
#[derive(Debug, Clone)]
struct Trailer {
    index_offset: u64,
    index_length: u64,
    index_frames: u32,
    index_nonce: [u8; 7],
    body_sha256: [u8; 32],
    mac: [u8; 32],
    raw: Vec<u8>,
}

/// The result of a quick (keyless) check.
#[derive(Debug, Clone)]
pub struct QuickCheck {
    /// SHA-256 of the whole file, as the catalog records it.
    pub sha256: String,
    pub bytes: u64,
    /// Whether the writer's signature matches the archive (None: not signed).
    pub signature_ok: Option<bool>,
}

#[derive(Clone)]
pub struct ArchiveReader {
    path: PathBuf,
    source: std::sync::Arc<dyn Bytes>,
    pub header: ArchiveHeader,
    header_hash: [u8; 32],
    header_end: u64,
    trailer: Trailer,
    file_len: u64,
    /// Where the trailer ends (before the signature, when signed).
    end: u64,
    signature: Option<[u8; 64]>,
    key: Option<SecretKey>,
    /// The repository's master key, once unlocked (it authenticates the approved writers).
    master: Option<SecretKey>,
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Validation, format!("the archive {} is damaged or was altered: {what}", path.display()))
}

fn read_exact(f: &mut impl Read, buf: &mut [u8], path: &Path, what: &str) -> Result<()> {
    f.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            corrupt(path, format!("it ends in the middle of {what} (truncated)"))
        } else {
            Error::new(ErrorCode::Io, format!("cannot read {}: {e}", path.display()))
        }
    })
}

/// The bytes of an archive, wherever they are (storage gives them: `crate::storage::archives`).
pub trait Bytes: Send + Sync {
    /// The archive's size.
    fn size(&self) -> Result<u64>;
    /// `len` bytes from `offset`, read as they are consumed.
    fn read_range(&self, offset: u64, len: u64) -> Result<Box<dyn Read + Send>>;
}

impl ArchiveReader {
    /// Opens an archive and reads its plaintext header and trailer (no key needed).
    /// Opens the archive whose bytes `source` gives; `path` names it in messages.
    pub fn from_bytes(path: &Path, source: std::sync::Arc<dyn Bytes>) -> Result<Self> {
        let file_len = source.size()?;
        let mut f = source.read_range(0, file_len)?;
        let mut magic = [0u8; 8];
        if f.read_exact(&mut magic).is_err() || &magic != MAGIC {
            return Err(Error::validation(format!("{} is not a Safehold archive", path.display())));
        }
        let mut v = [0u8; 2];
        read_exact(&mut f, &mut v, path, "the header")?;
        let version = u16::from_be_bytes(v);
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(Error::validation(format!(
                "{} uses archive format {version}; this Safehold reads formats {MIN_FORMAT_VERSION} to {FORMAT_VERSION} — use a newer Safehold",
                path.display()
            )));
        }
        let mut l = [0u8; 4];
        read_exact(&mut f, &mut l, path, "the header")?;
        let header_len = u64::from(u32::from_be_bytes(l));
        let signed = version >= SIGNED_FORMAT_VERSION;
        let end = if signed { file_len.saturating_sub(SIGNATURE_LEN as u64) } else { file_len };
        if header_len > 1 << 20 || 14 + header_len + TRAILER_LEN as u64 > end {
            return Err(corrupt(path, "the header length is impossible, or the file is truncated"));
        }
        let mut header_json = vec![0u8; usize::try_from(header_len).unwrap_or(0)];
        read_exact(&mut f, &mut header_json, path, "the header")?;
        let header: ArchiveHeader = serde_json::from_slice(&header_json).map_err(|e| corrupt(path, format!("the header is not readable ({e})")))?;
        let header_hash: [u8; 32] = Sha256::digest(&header_json).into();

        let mut f = source.read_range(end - TRAILER_LEN as u64, file_len - end + TRAILER_LEN as u64)?;
        let mut raw = vec![0u8; TRAILER_LEN];
        read_exact(&mut f, &mut raw, path, "the trailer")?;
        let signature = if signed {
            let mut block = [0u8; SIGNATURE_LEN];
            read_exact(&mut f, &mut block, path, "the signature")?;
            if &block[..8] != SIGNATURE_MAGIC {
                return Err(corrupt(path, "the writer's signature is missing (the file is truncated or was not finished)"));
            }
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&block[8..]);
            Some(sig)
        } else {
            None
        };
        if &raw[..8] != TRAILER_MAGIC {
            return Err(corrupt(path, "the trailer is missing (the file is truncated or was not finished)"));
        }
        let u64_at = |i: usize| u64::from_be_bytes(raw[i..i + 8].try_into().unwrap_or([0; 8]));
        let mut index_nonce = [0u8; 7];
        index_nonce.copy_from_slice(&raw[28..35]);
        let mut body_sha256 = [0u8; 32];
        body_sha256.copy_from_slice(&raw[35..67]);
        let mut mac = [0u8; 32];
        mac.copy_from_slice(&raw[67..99]);
        let trailer = Trailer {
            index_offset: u64_at(8),
            index_length: u64_at(16),
            index_frames: u32::from_be_bytes(raw[24..28].try_into().unwrap_or([0; 4])),
            index_nonce,
            body_sha256,
            mac,
            raw,
        };
        let header_end = 14 + header_len;
        // Checked: hostile offsets must not overflow.
        if trailer.index_offset < header_end || trailer.index_offset.checked_add(trailer.index_length) != end.checked_sub(TRAILER_LEN as u64) {
            return Err(corrupt(path, "the trailer does not point at the index"));
        }
        Ok(Self { path: path.to_path_buf(), source, header, header_hash, header_end, trailer, file_len, end, signature, key: None, master: None })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hashes the whole file and checks it against the trailer. Needs no key.
    pub fn quick_check(&self) -> Result<QuickCheck> {
        let body_len = self.end - TRAILER_LEN as u64;
        let mut f = BufReader::with_capacity(1 << 20, self.source.read_range(0, body_len)?);
        let mut body = Sha256::new();
        let mut whole = Sha256::new();
        let mut left = body_len;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            read_exact(&mut f, &mut buf[..n], &self.path, "the body")?;
            body.update(&buf[..n]);
            whole.update(&buf[..n]);
            left -= n as u64;
        }
        whole.update(&self.trailer.raw);
        // The writer signed everything before its signature.
        let signature_ok = self.signature.map(|sig| {
            let prefix: [u8; 32] = whole.clone().finalize().into();
            self.header.writer.as_ref().is_some_and(|w| super::verify_signature(&w.public_key, &prefix, &sig))
        });
        if let Some(sig) = &self.signature {
            whole.update(SIGNATURE_MAGIC);
            whole.update(sig);
        }
        let body: [u8; 32] = body.finalize().into();
        if body != self.trailer.body_sha256 {
            return Err(corrupt(&self.path, "its SHA-256 does not match the one recorded in its trailer"));
        }
        if !self.header.encrypted && trailer_mac(None, &self.header_hash, &self.trailer.raw[..67]) != self.trailer.mac {
            return Err(corrupt(&self.path, "the trailer's checksum is wrong"));
        }
        Ok(QuickCheck { sha256: hex::encode(whole.finalize()), bytes: self.file_len, signature_ok })
    }

    /// Who wrote the archive, checked: its signature against its bytes (reading the whole file)
    /// and its writer against the approved writers — the archive's copy of the list and
    /// `repository`'s (each authenticated by the master key, so it needs [`unlock`](Self::unlock)
    /// with a key first; without one a signed archive's writer cannot be told approved).
    /// The repository's master key, once [`unlock`](Self::unlock) found it.
    pub fn master_key(&self) -> Option<&SecretKey> {
        self.master.as_ref()
    }

    /// Opens the data key: with the repository's master key if given, else through the archive's
    /// own copies of the master key's slots (password or recovery key).
    pub fn unlock(&mut self, master: Option<&SecretKey>, unlock: Option<&Unlock>) -> Result<()> {
        let repo_aad = master_aad(&self.header.repository_id);
        let mk = match master {
            Some(mk) => Some(mk.clone()),
            None => match unlock {
                Some(u) => keys::open_master(&self.header.master_slots, u, &repo_aad)?,
                None => None,
            },
        };
        if !self.header.encrypted {
            // Nothing to decrypt; the master key (when given) still tells approved writers.
            self.master = mk;
            return Ok(());
        }
        let wrong = || {
            let what = match unlock {
                Some(Unlock::Recovery(_)) => "the recovery key",
                Some(Unlock::Password(_)) => "the password",
                Some(Unlock::Operator(_)) => "your operator key",
                None => "the repository's key",
            };
            Error::new(
                ErrorCode::AuthFailed,
                format!(
                    "{what} does not open the archive {} (repository {}); check the password or use the recovery key of that repository",
                    self.path.display(),
                    self.header.repository_id
                ),
            )
        };
        let mk = mk.ok_or_else(wrong)?;
        let aad = data_key_aad(&self.header.archive_id);
        let private = self.header.private_sealed.as_ref().and_then(|sealed| keys::open_private(&mk, sealed, &self.header.repository_id));
        let dk = self
            .header
            .key_slots
            .iter()
            .find_map(|s| match s {
                KeySlot::Repository { nonce, wrapped, .. } => keys::unwrap(&mk, nonce, wrapped, &aad),
                KeySlot::Public { .. } => private.as_ref().and_then(|p| keys::open_sealed(p, s, &aad)),
                _ => None,
            })
            .ok_or_else(wrong)?;
        if trailer_mac(Some(&dk), &self.header_hash, &self.trailer.raw[..67]) != self.trailer.mac {
            return Err(corrupt(&self.path, "its trailer is not authentic"));
        }
        self.key = Some(dk);
        self.master = Some(mk);
        Ok(())
    }

    /// Reads and authenticates the index.
    pub fn index(&self) -> Result<ArchiveIndex> {
        let entry = SectionEntry {
            name: "index".into(),
            kind: "index".into(),
            offset: self.trailer.index_offset,
            length: self.trailer.index_length,
            frames: self.trailer.index_frames,
            nonce: hex::encode(self.trailer.index_nonce),
            plain_bytes: 0,
            sha256: String::new(),
            rows: 0,
            mode: None,
            extents: Vec::new(),
        };
        let mut json = Vec::new();
        self.read_numbered(&entry, INDEX_SECTION_NO, false, &mut |chunk| {
            json.extend_from_slice(chunk);
            Ok(())
        })?;
        serde_json::from_slice(&json).map_err(|e| corrupt(&self.path, format!("the index is not readable ({e})")))
    }

    /// Streams a section's plaintext to `sink`, chunk by chunk, and checks its SHA-256 and size.
    pub fn read_section(&self, index: &ArchiveIndex, name: &str, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let (no, entry) = index
            .sections
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
            .ok_or_else(|| Error::not_found(format!("the archive {} has no section \"{name}\"", self.path.display())))?;
        self.read_numbered(entry, u32::try_from(no).unwrap_or(u32::MAX - 1), true, sink)
    }

    /// Streams a section's plaintext chunks from a blocking reader thread, so async consumers
    /// (COPY FROM STDIN, inserts) never hold a whole section in memory. A damaged chunk arrives
    /// as an error.
    pub fn section_chunks(self: &std::sync::Arc<Self>, index: &ArchiveIndex, name: &str) -> Result<tokio::sync::mpsc::Receiver<Result<Vec<u8>>>> {
        self.stream_section(index, name, false)
    }

    /// Like `section_chunks`, but every chunk ends at a line end (COPY's text format ends each row
    /// with the only raw newline it has), so the chunks can go to several COPYs into one table;
    /// only a last line without its newline (a damaged section) arrives as a chunk of its own.
    /// The section's SHA-256 is checked when its end is read: a mismatch arrives as an error.
    pub fn section_lines(self: &std::sync::Arc<Self>, index: &ArchiveIndex, name: &str) -> Result<tokio::sync::mpsc::Receiver<Result<Vec<u8>>>> {
        self.stream_section(index, name, true)
    }

    fn stream_section(self: &std::sync::Arc<Self>, index: &ArchiveIndex, name: &str, whole_lines: bool) -> Result<tokio::sync::mpsc::Receiver<Result<Vec<u8>>>> {
        if !index.sections.iter().any(|s| s.name == name) {
            return Err(Error::not_found(format!("the archive {} has no section \"{name}\"", self.path.display())));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let me = std::sync::Arc::clone(self);
        let index = index.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let stopped = || Error::new(ErrorCode::Cancelled, "the reader was stopped");
            let mut carry = Vec::new();
            let result = me.read_section(&index, &name, &mut |chunk| {
                if !whole_lines {
                    return tx.blocking_send(Ok(chunk.to_vec())).map_err(|_| stopped());
                }
                let Some(end) = chunk.iter().rposition(|&b| b == b'\n') else {
                    carry.extend_from_slice(chunk);
                    return Ok(());
                };
                let mut lines = std::mem::replace(&mut carry, chunk[end + 1..].to_vec());
                lines.extend_from_slice(&chunk[..=end]);
                tx.blocking_send(Ok(lines)).map_err(|_| stopped())
            });
            let result = result.and_then(|()| if carry.is_empty() { Ok(()) } else { tx.blocking_send(Ok(carry)).map_err(|_| stopped()) });
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok(rx)
    }

    fn read_numbered(&self, entry: &SectionEntry, no: u32, check: bool, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let section = &entry.name;
        if self.header.encrypted && self.key.is_none() {
            return Err(Error::new(ErrorCode::AuthFailed, format!("the archive {} is encrypted: unlock it first", self.path.display())));
        }
        let runs = entry.runs();
        let body_end = self.end.saturating_sub(TRAILER_LEN as u64);
        if runs.iter().any(|r| r.offset < self.header_end || r.offset.checked_add(r.length).is_none_or(|end| end > body_end)) {
            return Err(corrupt(&self.path, format!("section \"{section}\" lies outside the file")));
        }
        if runs.iter().try_fold(0u32, |n, r| n.checked_add(r.frames)) != Some(entry.frames) {
            return Err(corrupt(&self.path, format!("section \"{section}\" has runs that do not add up to its chunks")));
        }
        let nonce: [u8; 7] = hex::decode(&entry.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| corrupt(&self.path, format!("section \"{section}\" has a damaged nonce")))?;
        let stream = self.key.as_ref().map(|k| StreamBE32::<Aes256Gcm>::from_aead(k.cipher(), &nonce.into()));
        let aad = chunk_aad(&self.header_hash, no);
        let mut hash = Sha256::new();
        let mut plain = 0u64;
        let mut i = 0u32;
        // One decompression context for the section's chunks.
        let mut unpacker: Option<zstd::bulk::Decompressor<'static>> = None;
        for run in runs {
            // (A run's buffer no bigger than the run: an archive of many small sections.)
            let buffer = usize::try_from(run.length).unwrap_or(usize::MAX).clamp(8 << 10, 1 << 20);
            let mut f = BufReader::with_capacity(buffer, self.source.read_range(run.offset, run.length)?);
            for _ in 0..run.frames {
                let what = format!("section \"{section}\", chunk {} of {}", i + 1, entry.frames);
                let mut l = [0u8; 4];
                read_exact(&mut f, &mut l, &self.path, &what)?;
                let len = u32::from_be_bytes(l);
                if len > MAX_FRAME {
                    return Err(corrupt(&self.path, format!("{what} has an impossible length")));
                }
                let mut frame = vec![0u8; len as usize];
                read_exact(&mut f, &mut frame, &self.path, &what)?;
                let last = i + 1 == entry.frames;
                let packed = match &stream {
                    Some(s) => s.decrypt(i, last, Payload { msg: &frame, aad: &aad }).map_err(|_| {
                        corrupt(&self.path, format!("{what} failed authentication (altered, reordered or from another archive)"))
                    })?,
                    None => frame,
                };
                let chunk = if self.header.compression == "none" {
                    packed
                } else {
                    let unpack = match &mut unpacker {
                        Some(u) => u,
                        None => unpacker.insert(zstd::bulk::Decompressor::new().map_err(|e| Error::new(ErrorCode::Internal, format!("zstd failed: {e}")).caused_by(&e))?),
                    };
                    unpack.decompress(&packed, CHUNK_SIZE).map_err(|e| corrupt(&self.path, format!("{what} does not decompress ({e})")))?
                };
                hash.update(&chunk);
                plain += chunk.len() as u64;
                sink(&chunk)?;
                i += 1;
            }
            let mut rest = [0u8; 1];
            if f.read(&mut rest).map_err(|e| Error::io(self.path.display(), &e))? != 0 {
                return Err(corrupt(&self.path, format!("section \"{section}\" has bytes after its last chunk")));
            }
        }
        if check && (hex::encode(hash.finalize()) != entry.sha256 || plain != entry.plain_bytes) {
            return Err(corrupt(&self.path, format!("section \"{section}\" does not match its SHA-256 in the index")));
        }
        Ok(())
    }
}

/// Associated data for wrapping a repository's master key.
pub fn master_aad(repository_id: &str) -> Vec<u8> {
    format!("safehold-master-key:{repository_id}").into_bytes()
}

/// Associated data for wrapping an archive's data key.
pub fn data_key_aad(archive_id: &str) -> Vec<u8> {
    format!("safehold-data-key:{archive_id}").into_bytes()
}
