//! The Safehold archive: one self-describing file per backup, written in one streaming pass.
//! See docs/archive-format.md for the byte layout. Sections (the schema, then one per table) are
//! cut into chunks; each chunk is zstd-compressed and sealed with AES-256-GCM in the STREAM
//! construction (per-section nonce prefix, chunk counter, last-chunk flag), so a flipped bit, a
//! reordered, swapped or missing chunk is detected. The index and an authenticated trailer close
//! the file; the trailer also carries the SHA-256 of everything before it (checkable without a key).

pub mod keys;
mod reader;
mod writer;

use serde::{Deserialize, Serialize};

pub use keys::{KeySlot, SecretKey, Unlock};
pub use reader::{data_key_aad, master_aad, ArchiveReader, Bytes, QuickCheck};
pub use writer::{ArchiveWriter, Section, SectionWriter, Signer, Sink, WriteOptions, WrittenArchive};

/// The zstd level backups use unless told otherwise.
pub const DEFAULT_ZSTD_LEVEL: i32 = 2;
/// The file name extension of an archive (`<time>-<id>.shar`).
pub const ARCHIVE_EXT: &str = "shar";

pub const MAGIC: &[u8; 8] = b"SAFEHOLD";
pub const TRAILER_MAGIC: &[u8; 8] = b"SHTRAILR";
/// Version 2 lets a section's frames lie in several runs (`extents`), so tables dumped in
/// parallel stream into one file; version 1 archives (one run per section) still open. Version 3
/// ends with the writer's signature ([`SIGNATURE_MAGIC`], 64 bytes of Ed25519 over the SHA-256
/// of everything before it: [`signed_message`]).
pub const FORMAT_VERSION: u16 = 3;
/// The first version whose archives are signed.
pub const SIGNED_FORMAT_VERSION: u16 = 3;
pub const SIGNATURE_MAGIC: &[u8; 8] = b"SHSIGNAT";
pub const SIGNATURE_LEN: usize = 8 + 64;
/// The oldest format this Safehold reads.
pub const MIN_FORMAT_VERSION: u16 = 1;
/// Plaintext bytes per chunk before compression.
pub const CHUNK_SIZE: usize = 1 << 20;
/// Upper bound of one frame on disk (a chunk that does not compress, plus the tag).
pub const MAX_FRAME: u32 = 2 * (CHUNK_SIZE as u32) + 1024;
/// Trailer: magic, index offset, index length, index frames, index nonce, body SHA-256, MAC.
/// The index is sealed as section number u32::MAX.
pub const INDEX_SECTION_NO: u32 = u32::MAX;
pub const TRAILER_LEN: usize = 8 + 8 + 8 + 4 + 7 + 32 + 32;

/// What anyone can read without a key: enough to list and chain backups and rebuild a catalog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArchiveHeader {
    pub format_version: u16,
    pub archive_id: String,
    pub repository_id: String,
    /// full | incremental | differential
    pub backup_type: String,
    pub parent_id: Option<String>,
    pub source_kind: String,
    pub source_name: String,
    /// A stable fingerprint of the source (e.g. PostgreSQL's system identifier + database name).
    pub source_fingerprint: String,
    /// When the consistent snapshot was taken (RFC 3339 UTC).
    pub snapshot_time: String,
    pub created_at: String,
    pub compression: String,
    pub encrypted: bool,
    /// How to get the data key: wrapped by the repository's master key, and the master key's own
    /// slots (password, recovery), copied here so the archive opens on its own.
    pub key_slots: Vec<KeySlot>,
    pub master_slots: Vec<KeySlot>,
    /// The repository's private key sealed by the master key, copied here (with the master
    /// slots) so that an archive sealed to the public key opens on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_sealed: Option<(String, String)>,
    /// What an incremental backup needs of this one to build on it without the repository's key
    /// (PostgreSQL: the transaction snapshot, and each table's columns as hashes salted with the
    /// archive id — no names in clear). Absent in archives from before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<serde_json::Value>,
    /// Who wrote it: the writer key whose signature ends the archive (format 3 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<WriterStamp>,
    /// The repository's approved writers when it was written (authenticated by its master key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writers: Option<Writers>,
}

/// A writer a holder of the master key approved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApprovedWriter {
    pub public_key: String,
    pub name: String,
    pub approved_at: String,
}

/// A repository's approved writers, with the authenticator a key derived from its master key
/// made over them (checked where the master key is: `crate::writers`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Writers {
    pub list: Vec<ApprovedWriter>,
    pub mac: String,
}

const SIGNATURE_CONTEXT: &[u8] = b"safehold archive signature v1\0";

/// What a writer signs: a fixed context and the SHA-256 of every byte before the signature.
pub fn signed_message(prefix_sha256: &[u8; 32]) -> Vec<u8> {
    let mut m = SIGNATURE_CONTEXT.to_vec();
    m.extend_from_slice(prefix_sha256);
    m
}

/// Whether `signature` is `public_key`'s (hex) over an archive whose bytes before it hash to
/// `prefix_sha256`.
pub fn verify_signature(public_key: &str, prefix_sha256: &[u8; 32], signature: &[u8; 64]) -> bool {
    use ed25519_dalek::Verifier;
    let Some(bytes) = hex::decode(public_key).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()) else { return false };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&bytes) else { return false };
    key.verify(&signed_message(prefix_sha256), &ed25519_dalek::Signature::from_bytes(signature)).is_ok()
}

/// The writer named in an archive's header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WriterStamp {
    pub name: String,
    pub public_key: String,
}

/// One section of the archive as the index records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SectionEntry {
    pub name: String,
    /// "schema" or "table"
    pub kind: String,
    pub offset: u64,
    pub length: u64,
    pub frames: u32,
    pub nonce: String,
    pub plain_bytes: u64,
    pub sha256: String,
    pub rows: u64,
    /// For tables of incremental and differential backups: "delta" when the section holds only
    /// the rows changed since the parent (with a "<name>#keys" section listing every key at the
    /// snapshot or, for a PostgreSQL table without a key, a "<name>#live" section listing the
    /// row positions it does not carry), absent when it holds the whole table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Where the section's frames lie when they are not one run (sections written concurrently
    /// interleave): in order, each run's offset, length and frame count. Empty for one run
    /// (`offset`, `length`); `length` and `frames` are then the totals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extents: Vec<Extent>,
}

/// A run of consecutive frames of one section.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Extent {
    pub offset: u64,
    pub length: u64,
    pub frames: u32,
}

impl SectionEntry {
    /// The runs of frames, in order.
    pub fn runs(&self) -> Vec<Extent> {
        if self.extents.is_empty() {
            vec![Extent { offset: self.offset, length: self.length, frames: self.frames }]
        } else {
            self.extents.clone()
        }
    }
}

/// The index: the sections and what the backup counted, written after them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ArchiveIndex {
    pub sections: Vec<SectionEntry>,
    pub table_count: u64,
    pub record_count: u64,
    pub tenant_count: u64,
    /// Free-form facts of the source (e.g. the transaction snapshot, for incremental backups).
    pub source_state: serde_json::Value,
}

impl ArchiveIndex {
    pub fn section(&self, name: &str) -> Option<&SectionEntry> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The rows a table has once its chain is restored up to this archive: a delta's newest key
    /// list (or the rows it carries and the rows it lists as kept), else the section's rows.
    pub fn rows_after_chain(&self, table: &str) -> u64 {
        match self.section(table) {
            Some(e) if e.mode.as_deref() == Some("delta") => match (self.section(&format!("{table}#keys")), self.section(&format!("{table}#live"))) {
                (Some(keys), _) => keys.rows,
                (None, Some(live)) => live.rows + e.rows,
                (None, None) => e.rows,
            },
            Some(e) => e.rows,
            None => 0,
        }
    }
}

/// Associated data binding a chunk to its archive and section: SHA-256(header) ‖ section number.
pub(crate) fn chunk_aad(header_hash: &[u8; 32], section_no: u32) -> [u8; 36] {
    let mut aad = [0u8; 36];
    aad[..32].copy_from_slice(header_hash);
    aad[32..].copy_from_slice(&section_no.to_be_bytes());
    aad
}
