//! Writing an archive in one pass. The file is written under a temporary name and renamed into
//! place only when complete, so a failed or cancelled backup leaves nothing behind.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use aead_stream::{NewStream, StreamBE32, StreamPrimitive};
use aes_gcm::aead::Payload;
use aes_gcm::Aes256Gcm;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{chunk_aad, ArchiveHeader, ArchiveIndex, Extent, SectionEntry, SecretKey, CHUNK_SIZE, FORMAT_VERSION, MAGIC, TRAILER_MAGIC};
use crate::error::{Error, ErrorCode, Result};

#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// zstd level; `None` stores chunks uncompressed.
    pub zstd_level: Option<i32>,
    /// Threads that compress and seal chunks while the source keeps streaming.
    pub threads: usize,
    /// The writer key that signs the archive (None: the default home's).
    pub signer: Option<std::sync::Arc<dyn Signer>>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self { zstd_level: Some(super::DEFAULT_ZSTD_LEVEL), threads: std::thread::available_parallelism().map(usize::from).unwrap_or(1), signer: None }
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
    results: std::sync::mpsc::Receiver<(u64, u32, Result<Vec<u8>>)>,
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
                std::thread::spawn(move || {
                    // One compression context per thread, reused for every chunk (making one
                    // costs as much as compressing a small chunk).
                    let mut packer = level.map(zstd::bulk::Compressor::new);
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => match guard.recv() {
                                Ok(j) => j,
                                Err(_) => return,
                            },
                            Err(_) => return,
                        };
                        let frame = match &mut packer {
                            Some(Err(e)) => Err(zstd_failed(e)),
                            Some(Ok(p)) => seal(&job, cipher.as_ref(), &header_hash, Some(p)),
                            None => seal(&job, cipher.as_ref(), &header_hash, None),
                        };
                        if tx.send((job.seq, job.section_no, frame)).is_err() {
                            return;
                        }
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

fn zstd_failed(e: &std::io::Error) -> Error {
    Error::new(ErrorCode::Internal, format!("zstd failed: {e}")).caused_by(e)
}

fn seal(job: &Job, cipher: Option<&Aes256Gcm>, header_hash: &[u8; 32], packer: Option<&mut zstd::bulk::Compressor<'static>>) -> Result<Vec<u8>> {
    let packed = match packer {
        Some(p) => p.compress(&job.plain).map_err(|e| zstd_failed(&e))?,
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

/// Where an archive's bytes go — storage gives one (`crate::storage::backend`): a file written
/// beside its place and renamed into it, or a multipart upload. It appears only when finished;
/// dropped unfinished, it leaves nothing.
pub trait Sink: Write + Send {
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Who signs an archive (a home's writer key: `crate::writers::WriterKey`).
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// The writer's name, as listings show it.
    fn name(&self) -> String;
    /// The public key, hex.
    fn public_key(&self) -> String;
    /// The signature of an archive whose bytes before the signature hash to `prefix_sha256`
    /// (over [`super::signed_message`]).
    fn sign(&self, prefix_sha256: &[u8; 32]) -> [u8; 64];
}

/// A writer that counts and hashes everything written.
struct Hashing {
    out: Option<BufWriter<Box<dyn Sink>>>,
    hash: Sha256,
    pos: u64,
}

impl Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.as_mut().ok_or_else(|| std::io::Error::other("the archive is closed"))?.write_all(bytes)?;
        self.hash.update(bytes);
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

pub struct ArchiveWriter {
    sealer: Sealer,
    next_seq: u64,
    next_to_write: u64,
    ready: std::collections::BTreeMap<u64, (u32, Vec<u8>)>,
    /// Where each open section's frames were written (sections may be written concurrently:
    /// their frames interleave in the file).
    extents: std::collections::HashMap<u32, Vec<Extent>>,
    next_section_no: u32,
    /// The section number of each entry of `index.sections` (sorted into place at the end).
    numbers: Vec<u32>,
    file: Hashing,
    /// Where it is going (for messages, and what [`WrittenArchive::path`] says).
    dest: PathBuf,
    key: Option<SecretKey>,
    header_hash: [u8; 32],
    index: ArchiveIndex,
    raw_bytes: u64,
    signer: std::sync::Arc<dyn Signer>,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    let hint = if e.raw_os_error() == Some(28) { "; the disk is full — free space or choose another storage" } else { "" };
    Error::new(ErrorCode::Io, format!("cannot write the archive {}: {e}{hint}", path.display()))
}

impl ArchiveWriter {
    /// Starts an archive into `sink` (`dest` names it). `key` is the archive's data key, `None`
    /// for an unencrypted archive; the archive is signed by `options.signer`.
    pub fn to_sink(dest: &Path, sink: Box<dyn Sink>, header: &ArchiveHeader, key: Option<SecretKey>, options: WriteOptions) -> Result<Self> {
        // Signed by its writer (the header names it; the signature closes the file).
        let signer = options.signer.clone().ok_or_else(|| Error::new(ErrorCode::Internal, "an archive is written with a writer key to sign it"))?;
        let mut header = header.clone();
        header.format_version = FORMAT_VERSION;
        header.writer = Some(super::WriterStamp { name: signer.name(), public_key: signer.public_key() });
        let header = &header;
        let tmp = dest.to_path_buf();
        let out = Some(BufWriter::with_capacity(1 << 20, sink));
        let mut file = Hashing { out, hash: Sha256::new(), pos: 0 };
        let header_json = serde_json::to_vec(header).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?;
        let header_hash: [u8; 32] = Sha256::digest(&header_json).into();
        let mut w = || -> std::io::Result<()> {
            file.write(MAGIC)?;
            file.write(&FORMAT_VERSION.to_be_bytes())?;
            file.write(&u32::try_from(header_json.len()).unwrap_or(u32::MAX).to_be_bytes())?;
            file.write(&header_json)
        };
        w().map_err(|e| io(&tmp, e))?;
        let sealer = Sealer::start(key.clone(), header_hash, options.zstd_level, options.threads);
        Ok(Self { sealer, next_seq: 0, next_to_write: 0, ready: Default::default(), extents: Default::default(), next_section_no: 0, numbers: Vec::new(), file, dest: dest.to_path_buf(), key, header_hash, index: ArchiveIndex::default(), raw_bytes: 0, signer })
    }

    /// Starts the next section; written to the end before the next one starts.
    pub fn section(&mut self, name: &str, kind: &str) -> SectionWriter<'_> {
        let handle = self.begin(name, kind);
        SectionWriter { archive: self, handle }
    }

    /// Starts a section that may be written while others are (a parallel dump): give its data to
    /// [`write`](Self::write) and close it with [`end`](Self::end). Its frames interleave with
    /// the other open sections' in the file; the index records where each run of them lies.
    pub fn begin(&mut self, name: &str, kind: &str) -> Section {
        let no = self.next_section_no;
        self.next_section_no += 1;
        self.begin_numbered(name, kind, no)
    }

    fn begin_numbered(&mut self, name: &str, kind: &str, section_no: u32) -> Section {
        let mut nonce = [0u8; 7];
        rand::rng().fill_bytes(&mut nonce);
        self.extents.insert(section_no, Vec::new());
        Section {
            name: name.to_string(),
            kind: kind.to_string(),
            nonce,
            section_no,
            buf: Vec::with_capacity(CHUNK_SIZE),
            frames: 0,
            plain: 0,
            hash: Sha256::new(),
            rows: 0,
            mode: None,
        }
    }

    /// Adds plaintext to an open section.
    pub fn write(&mut self, s: &mut Section, mut data: &[u8]) -> Result<()> {
        s.hash.update(data);
        s.plain += data.len() as u64;
        while !data.is_empty() {
            let take = (CHUNK_SIZE - s.buf.len()).min(data.len());
            s.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if s.buf.len() == CHUNK_SIZE && !data.is_empty() {
                self.flush_chunk(s, false)?;
            }
        }
        Ok(())
    }

    fn flush_chunk(&mut self, s: &mut Section, last: bool) -> Result<()> {
        let plain = std::mem::replace(&mut s.buf, Vec::with_capacity(CHUNK_SIZE));
        let seq = self.next_seq;
        self.submit(Job { seq, section_no: s.section_no, nonce: s.nonce, counter: s.frames, last, plain })?;
        s.frames += 1;
        Ok(())
    }

    fn close_entry(&mut self, mut s: Section) -> Result<SectionEntry> {
        self.flush_chunk(&mut s, true)?;
        self.drain()?;
        let extents = self.extents.remove(&s.section_no).unwrap_or_default();
        let offset = extents.first().map_or(self.file.pos, |e| e.offset);
        Ok(SectionEntry {
            name: s.name,
            kind: s.kind,
            offset,
            length: extents.iter().map(|e| e.length).sum(),
            frames: s.frames,
            nonce: hex::encode(s.nonce),
            plain_bytes: s.plain,
            sha256: hex::encode(s.hash.finalize()),
            rows: s.rows,
            mode: s.mode,
            extents: if extents.len() > 1 { extents } else { Vec::new() },
        })
    }

    /// Ends an open section and records it in the index.
    pub fn end(&mut self, s: Section) -> Result<SectionEntry> {
        let no = s.section_no;
        let entry = self.close_entry(s)?;
        self.raw_bytes += entry.plain_bytes;
        self.index.sections.push(entry.clone());
        self.numbers.push(no);
        Ok(entry)
    }

    /// Hands a chunk to the sealing threads, writing finished frames in order meanwhile.
    fn submit(&mut self, job: Job) -> Result<()> {
        while self.next_seq - self.next_to_write >= self.sealer.max_in_flight as u64 {
            self.receive_one()?;
        }
        let tx = self.sealer.jobs.as_ref().ok_or_else(|| Error::new(ErrorCode::Internal, "the sealing threads stopped"))?;
        tx.send(job).map_err(|_| Error::new(ErrorCode::Internal, "the sealing threads stopped"))?;
        self.next_seq += 1;
        while let Ok((seq, no, frame)) = self.sealer.results.try_recv() {
            self.ready.insert(seq, (no, frame?));
        }
        self.write_ready()
    }

    fn receive_one(&mut self) -> Result<()> {
        let (seq, no, frame) = self.sealer.results.recv().map_err(|_| Error::new(ErrorCode::Internal, "the sealing threads stopped"))?;
        self.ready.insert(seq, (no, frame?));
        self.write_ready()
    }

    fn write_ready(&mut self) -> Result<()> {
        while let Some((no, frame)) = self.ready.remove(&self.next_to_write) {
            let tmp = self.dest.clone();
            let len = u32::try_from(frame.len()).map_err(|_| Error::new(ErrorCode::Internal, "frame too large"))?;
            let at = self.file.pos;
            self.file.write(&len.to_be_bytes()).map_err(|e| io(&tmp, e))?;
            self.file.write(&frame).map_err(|e| io(&tmp, e))?;
            self.next_to_write += 1;
            let runs = self.extents.entry(no).or_default();
            match runs.last_mut() {
                Some(run) if run.offset + run.length == at => {
                    run.length += 4 + u64::from(len);
                    run.frames += 1;
                }
                _ => runs.push(Extent { offset: at, length: 4 + u64::from(len), frames: 1 }),
            }
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
        // Sections are numbered as they were started; the index lists them in that order.
        let mut numbered: Vec<(u32, SectionEntry)> = std::mem::take(&mut self.numbers).into_iter().zip(std::mem::take(&mut self.index.sections)).collect();
        numbered.sort_by_key(|(no, _)| *no);
        if numbered.iter().enumerate().any(|(i, (no, _))| i as u64 != u64::from(*no)) || numbered.len() as u64 != u64::from(self.next_section_no) {
            return Err(Error::new(ErrorCode::Internal, "a section of the archive was started but not finished"));
        }
        self.index.sections = numbered.into_iter().map(|(_, e)| e).collect();
        let index_json = serde_json::to_vec(&self.index).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?;
        let mut sec = self.begin_numbered("index", "index", super::INDEX_SECTION_NO);
        self.write(&mut sec, &index_json)?;
        let entry = self.close_entry(sec)?;
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
        let tmp = self.dest.clone();
        self.file.write(&trailer).map_err(|e| io(&tmp, e))?;
        // The writer's signature over everything before it.
        let prefix: [u8; 32] = self.file.hash.clone().finalize().into();
        let signature = self.signer.sign(&prefix);
        self.file.write(super::SIGNATURE_MAGIC).map_err(|e| io(&tmp, e))?;
        self.file.write(&signature).map_err(|e| io(&tmp, e))?;
        let out = self.file.out.take().ok_or_else(|| Error::new(ErrorCode::Internal, "the archive was closed twice"))?;
        let sink = out.into_inner().map_err(|e| io(&tmp, e.into_error()))?;
        sink.finish()?;
        let sha = hex::encode(self.file.hash.clone().finalize());
        Ok(WrittenArchive { path: self.dest.clone(), bytes: self.file.pos, raw_bytes: self.raw_bytes, sha256: sha, index: self.index.clone() })
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

/// A section being written: plaintext buffered into chunks, each compressed and sealed.
pub struct Section {
    name: String,
    kind: String,
    nonce: [u8; 7],
    section_no: u32,
    buf: Vec<u8>,
    frames: u32,
    plain: u64,
    hash: Sha256,
    rows: u64,
    mode: Option<String>,
}

impl Section {
    /// Marks the section as holding only changed rows (see [`SectionEntry::mode`]).
    pub fn set_mode(&mut self, mode: &str) {
        self.mode = Some(mode.to_string());
    }

    pub fn add_rows(&mut self, n: u64) {
        self.rows += n;
    }
}

/// Writes one section to its end.
pub struct SectionWriter<'a> {
    archive: &'a mut ArchiveWriter,
    handle: Section,
}

impl SectionWriter<'_> {
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.archive.write(&mut self.handle, data)
    }

    /// Marks the section as holding only changed rows (see [`SectionEntry::mode`]).
    pub fn set_mode(&mut self, mode: &str) {
        self.handle.set_mode(mode);
    }

    pub fn add_rows(&mut self, n: u64) {
        self.handle.add_rows(n);
    }

    /// Ends the section and records it in the index.
    pub fn finish(self) -> Result<SectionEntry> {
        self.archive.end(self.handle)
    }
}
