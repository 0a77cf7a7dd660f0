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
    /// Threads that compress and seal chunks while the source keeps streaming.
    pub threads: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self { zstd_level: Some(crate::backup::DEFAULT_ZSTD_LEVEL), threads: std::thread::available_parallelism().map(usize::from).unwrap_or(1) }
    }
}

/// One chunk to compress and seal.
struct Job {
    seq: u64,
    section_no: u32,
    nonce: [u8; 7],
    counter: u32,
    last: bool,
    plain: Vec<u8>,
}

/// Compresses and seals chunks on worker threads; frames come back tagged with their sequence
/// number and are written in order by the archive writer. Memory stays bounded: at most
/// `2 × threads` chunks are in flight.
struct Sealer {
    jobs: Option<std::sync::mpsc::SyncSender<Job>>,
    results: std::sync::mpsc::Receiver<(u64, Result<Vec<u8>>)>,
    workers: Vec<std::thread::JoinHandle<()>>,
    max_in_flight: usize,
}

impl Sealer {
    fn start(key: Option<SecretKey>, header_hash: [u8; 32], level: Option<i32>, threads: usize) -> Self {
        let threads = threads.max(1);
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<Job>(threads * 2);
        let (res_tx, res_rx) = std::sync::mpsc::channel();
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = std::sync::Arc::clone(&job_rx);
                let tx = res_tx.clone();
                let cipher = key.as_ref().map(SecretKey::cipher);
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => match guard.recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        },
                        Err(_) => return,
                    };
                    let frame = seal(&job, cipher.as_ref(), &header_hash, level);
                    if tx.send((job.seq, frame)).is_err() {
                        return;
                    }
                })
            })
            .collect();
        Self { jobs: Some(job_tx), results: res_rx, workers, max_in_flight: threads * 2 }
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn seal(job: &Job, cipher: Option<&Aes256Gcm>, header_hash: &[u8; 32], level: Option<i32>) -> Result<Vec<u8>> {
    let packed = match level {
        Some(level) => zstd::bulk::compress(&job.plain, level).map_err(|e| Error::new(ErrorCode::Internal, format!("zstd failed: {e}")))?,
        None => job.plain.clone(),
    };
    match cipher {
        Some(c) => {
            let stream = StreamBE32::<Aes256Gcm>::from_aead(c.clone(), &job.nonce.into());
            let aad = chunk_aad(header_hash, job.section_no);
            stream
                .encrypt(job.counter, job.last, Payload { msg: &packed, aad: &aad })
                .map_err(|_| Error::new(ErrorCode::Internal, "AES-GCM encryption failed"))
        }
        None => Ok(packed),
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

/// Where the archive's bytes go: a local file (renamed into place when complete) or a multipart
/// upload (the object appears when the upload completes).
enum Sink {
    File(BufWriter<File>),
    Object(crate::remote::Upload),
    Closed,
}

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(f) => f.write(b),
            Sink::Object(u) => u.write(b),
            Sink::Closed => Err(std::io::Error::other("the archive is closed")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Object(u) => u.flush(),
            Sink::Closed => Ok(()),
        }
    }
}

/// A writer that counts and hashes everything written.
struct Hashing {
    out: Sink,
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
    sealer: Sealer,
    next_seq: u64,
    next_to_write: u64,
    ready: std::collections::BTreeMap<u64, Vec<u8>>,
    file: Hashing,
    tmp: PathBuf,
    dest: PathBuf,
    key: Option<SecretKey>,
    header_hash: [u8; 32],
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
        let (tmp, out) = if crate::remote::is_remote(dest) {
            (dest.to_path_buf(), Sink::Object(crate::remote::object(dest)?.upload()?))
        } else {
            let tmp = dest.with_extension("partial");
            let f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
            (tmp, Sink::File(BufWriter::with_capacity(1 << 20, f)))
        };
        let mut file = Hashing { out, hash: Sha256::new(), pos: 0 };
        let header_json = serde_json::to_vec(header).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        let header_hash: [u8; 32] = Sha256::digest(&header_json).into();
        let mut w = || -> std::io::Result<()> {
            file.write(MAGIC)?;
            file.write(&FORMAT_VERSION.to_be_bytes())?;
            file.write(&u32::try_from(header_json.len()).unwrap_or(u32::MAX).to_be_bytes())?;
            file.write(&header_json)
        };
        w().map_err(|e| io(&tmp, e))?;
        let sealer = Sealer::start(key.clone(), header_hash, options.zstd_level, options.threads);
        Ok(Self { sealer, next_seq: 0, next_to_write: 0, ready: Default::default(), file, tmp, dest: dest.to_path_buf(), key, header_hash, index: ArchiveIndex::default(), raw_bytes: 0, finished: false })
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

    /// Hands a chunk to the sealing threads, writing finished frames in order meanwhile.
    fn submit(&mut self, job: Job) -> Result<()> {
        while self.next_seq - self.next_to_write >= self.sealer.max_in_flight as u64 {
            self.receive_one()?;
        }
        let tx = self.sealer.jobs.as_ref().ok_or_else(|| Error::new(ErrorCode::Internal, "the sealing threads stopped"))?;
        tx.send(job).map_err(|_| Error::new(ErrorCode::Internal, "the sealing threads stopped"))?;
        self.next_seq += 1;
        while let Ok((seq, frame)) = self.sealer.results.try_recv() {
            self.ready.insert(seq, frame?);
        }
        self.write_ready()
    }

    fn receive_one(&mut self) -> Result<()> {
        let (seq, frame) = self.sealer.results.recv().map_err(|_| Error::new(ErrorCode::Internal, "the sealing threads stopped"))?;
        self.ready.insert(seq, frame?);
        self.write_ready()
    }

    fn write_ready(&mut self) -> Result<()> {
        while let Some(frame) = self.ready.remove(&self.next_to_write) {
            let tmp = self.tmp.clone();
            let len = u32::try_from(frame.len()).map_err(|_| Error::new(ErrorCode::Internal, "frame too large"))?;
            self.file.write(&len.to_be_bytes()).map_err(|e| io(&tmp, e))?;
            self.file.write(&frame).map_err(|e| io(&tmp, e))?;
            self.next_to_write += 1;
        }
        Ok(())
    }

    /// Waits until every submitted frame is written.
    fn drain(&mut self) -> Result<()> {
        while self.next_to_write < self.next_seq {
            self.receive_one()?;
        }
        Ok(())
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
        match std::mem::replace(&mut self.file.out, Sink::Closed) {
            Sink::File(f) => {
                f.get_ref().sync_all().map_err(|e| io(&tmp, e))?;
                drop(f);
                std::fs::rename(&self.tmp, &self.dest).map_err(|e| io(&self.dest, e))?;
                if let Some(dir) = self.dest.parent() {
                    if let Ok(d) = File::open(dir) {
                        let _ = d.sync_all();
                    }
                }
            }
            Sink::Object(upload) => upload.finish()?,
            Sink::Closed => return Err(Error::new(ErrorCode::Internal, "the archive was closed twice")),
        }
        self.finished = true;
        let sha = hex::encode(self.file.hash.clone().finalize());
        Ok(WrittenArchive { path: self.dest.clone(), bytes: self.file.pos, raw_bytes: self.raw_bytes, sha256: sha, index: self.index.clone() })
    }
}

impl Drop for ArchiveWriter {
    /// An archive that was not finished is removed: no partial archive is ever left behind.
    fn drop(&mut self) {
        // (An unfinished upload aborts itself when dropped.)
        if !self.finished && !crate::remote::is_remote(&self.tmp) {
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
        let plain = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_SIZE));
        let seq = self.archive.next_seq;
        self.archive.submit(Job { seq, section_no: self.section_no, nonce: self.nonce, counter: self.frames, last, plain })?;
        self.frames += 1;
        Ok(())
    }

    fn close_entry(&mut self) -> Result<SectionEntry> {
        self.flush_chunk(true)?;
        self.archive.drain()?;
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
