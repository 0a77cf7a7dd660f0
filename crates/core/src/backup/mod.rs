//! Taking a backup: a source's consistent snapshot streamed into a new archive of a repository.
//! The archive appears in the repository only when complete; a failure or a cancel leaves none.

pub mod records;

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use ts_rs::TS;

use crate::archive::keys::{self, SecretKey};
use crate::archive::{data_key_aad, ArchiveHeader, ArchiveWriter, KeySlot, WriteOptions, FORMAT_VERSION};
use crate::catalog::now;
use crate::configurations::BackupType;
use crate::error::{Error, Result};

use crate::repository::{Repository, ARCHIVE_EXT};
use crate::source::{self, CancelToken, Include, ProgressSink, SourceSpec};

/// zstd level 2: on platform data it compresses better than level 3 and runs ~1.6× faster
/// (shared/bench measurements), which keeps the backup close to the database's read speed.
pub use crate::archive::DEFAULT_ZSTD_LEVEL;

/// Ends the source fingerprint of a safety backup.
pub const SAFETY_MARK: &str = "#safety";

/// Ends the source fingerprint of a tenant export (a backup of some tenants only).
pub const TENANTS_MARK: &str = "#tenants";

/// Whether a backup with this fingerprint holds a whole source (not a safety backup of some
/// tables nor a tenant export), so that it may be a parent or a point-in-time pick.
pub fn is_whole(fingerprint: &str) -> bool {
    !fingerprint.ends_with(SAFETY_MARK) && !fingerprint.ends_with(TENANTS_MARK)
}

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub source: SourceSpec,
    /// The name shown in listings (a connection's name, or the URL without password).
    pub source_name: String,
    pub tenant_column: String,
    pub tenants_table: String,
    pub backup_type: BackupType,
    /// zstd level, `None` for no compression.
    pub zstd_level: Option<i32>,
    pub encrypt: bool,
    pub jobs: usize,
    pub include: Include,
    /// Only these tables (`schema.table`), e.g. a safety backup of what a restore replaces.
    pub tables: Option<std::collections::BTreeSet<String>>,
    /// A safety backup taken before a restore: its fingerprint is marked so it never becomes the
    /// parent of an incremental backup nor the pick of a point-in-time restore.
    pub safety: bool,
    /// Only these tenants' rows of the tenant tables (a tenant export); the other tables whole.
    /// Always a full backup, marked so it never becomes a parent nor a point-in-time pick.
    pub tenants: Vec<String>,
    /// Write the archive to this file instead of the repository's archives folder.
    pub dest: Option<PathBuf>,
    /// The writer key that signs the archive (None: the default home's).
    pub signer: Option<std::sync::Arc<crate::writers::WriterKey>>,
    /// A transaction open longer than this when the snapshot is taken is warned about (it makes
    /// incrementals built on this backup carry everything written since it began).
    pub long_transaction: std::time::Duration,
}

impl BackupRequest {
    /// What the source reads for this request.
    pub fn dump_scope(&self) -> source::DumpScope {
        source::DumpScope { tenant_column: self.tenant_column.clone(), tenants_table: self.tenants_table.clone(), include: self.include, tables: self.tables.clone(), tenants: self.tenants.clone(), absent_tenants_ok: self.safety, jobs: self.jobs, long_transaction: self.long_transaction }
    }

    pub fn new(source: SourceSpec) -> Self {
        Self {
            source_name: source.display(),
            source,
            tenant_column: "tenant_id".into(),
            tenants_table: "tenants".into(),
            backup_type: BackupType::Full,
            zstd_level: Some(DEFAULT_ZSTD_LEVEL),
            encrypt: true,
            jobs: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
            include: Include::default(),
            tables: None,
            safety: false,
            tenants: Vec::new(),
            dest: None,
            signer: None,
            long_transaction: std::time::Duration::from_secs(60),
        }
    }
}

/// What a backup produced (the CLI's `backup --json`).
#[derive(Debug, Clone, Serialize, TS)]
pub struct BackupOutcome {
    pub id: String,
    pub archive: String,
    #[serde(rename = "type")]
    #[ts(rename = "type")]
    pub backup_type: BackupType,
    pub parent: Option<String>,
    pub bytes: u64,
    pub raw_bytes: u64,
    pub tables: u64,
    pub rows: u64,
    pub tenant_count: u64,
    pub sha256: String,
    pub seconds: f64,
    pub snapshot_time: String,
    /// Why the backup is not of the type asked for (e.g. the first incremental is a full).
    pub note: Option<String>,
    /// What the administrator should know about the source, e.g. a session left idle in a
    /// transaction that makes incrementals built on this backup carry everything written since.
    pub warnings: Vec<String>,
    /// The writer that signed the archive: its name and public key.
    pub writer: String,
    pub writer_key: String,
}

/// What an incremental or differential backup reads of its parent, per kind of source.
enum ParentBasis {
    Postgres(source::postgres::Parent),
    Sqlite(source::sqlite::Parent),
}

/// A new data key for the archive `id` and the slots that open it: sealed to the repository's
/// public key (no secret needed to write), or wrapped by its master key for a repository without
/// a key pair yet; none for an archive that is not encrypted.
pub(crate) fn seal_data_key(repo: &Repository, master: Option<&SecretKey>, encrypt: bool, id: &str) -> Result<(SecretKey, Vec<KeySlot>)> {
    let dk = SecretKey::random();
    let key_slots = match (encrypt, &repo.config.public_key, master) {
        (false, _, _) => Vec::new(),
        (true, Some(public), _) => vec![keys::seal_to_public(public, &dk, &data_key_aad(id))?],
        (true, None, Some(mk)) => {
            let (nonce, wrapped) = keys::wrap(mk, &dk, &data_key_aad(id))?;
            vec![KeySlot::Repository { repository_id: repo.id().to_string(), nonce, wrapped }]
        }
        (true, None, None) => {
            return Err(Error::new(
                crate::error::ErrorCode::AuthFailed,
                format!("the repository {} has no public key yet: back up once with its password (or keychain secret) to give it one", repo.dir.display()),
            ))
        }
    };
    Ok((dk, key_slots))
}

/// A header for a new archive `id` of `repo`: the repository's key slots, sealed private key and
/// approved writers filled in; the caller sets what the archive holds (`..header(…)`).
pub fn header(repo: &Repository, id: &str, encrypt: bool, key_slots: Vec<KeySlot>) -> ArchiveHeader {
    let at = now();
    ArchiveHeader {
        format_version: FORMAT_VERSION,
        archive_id: id.to_string(),
        repository_id: repo.id().to_string(),
        backup_type: "full".into(),
        parent_id: None,
        source_kind: "postgres".into(),
        source_name: String::new(),
        source_fingerprint: String::new(),
        snapshot_time: at.clone(),
        created_at: at,
        compression: "zstd".into(),
        encrypted: encrypt,
        key_slots,
        // (Also in an archive that is not encrypted: the master key authenticates its writers.)
        master_slots: repo.config.master_slots.clone(),
        private_sealed: if encrypt { repo.config.private_sealed.clone() } else { None },
        basis: None,
        writer: None,
        writers: repo.config.writers.clone(),
    }
}

/// Runs a backup into `repo` (whose master key is `master`).
pub async fn run(repo: &Repository, master: &SecretKey, req: &BackupRequest, cancel: &CancelToken, progress: &ProgressSink) -> Result<BackupOutcome> {
    run_with(repo, Some(master), req, cancel, progress).await
}

/// Runs a backup into `repo`. The archive's data key is sealed to the repository's public key,
/// so writing needs no secret and reading needs the private key (the repository's password or
/// recovery kit). `master` is needed for a repository without a key pair yet, and to read the
/// parent of an incremental or differential backup of SQLite; a PostgreSQL parent's plaintext
/// header says enough (without it, or for an older parent, the backup is a full one).
pub async fn run_with(repo: &Repository, master: Option<&SecretKey>, req: &BackupRequest, cancel: &CancelToken, progress: &ProgressSink) -> Result<BackupOutcome> {
    let started = Instant::now();
    let id = uuid::Uuid::new_v4().to_string();
    let snapshot_time = now();
    let (dk, key_slots) = seal_data_key(repo, master, req.encrypt, &id)?;
    let fingerprint = match &req.source {
        SourceSpec::Sqlite { path } => format!("sqlite:{}", std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()).display()),
        SourceSpec::Postgres { url } => source::postgres::fingerprint(url).await?,
    };
    let fingerprint = if req.safety {
        format!("{fingerprint}{SAFETY_MARK}")
    } else if !req.tenants.is_empty() {
        format!("{fingerprint}{TENANTS_MARK}")
    } else {
        fingerprint
    };
    if !req.tenants.is_empty() && !matches!(req.source, SourceSpec::Postgres { .. }) {
        return Err(Error::validation("a backup of some tenants only needs a PostgreSQL source"));
    }
    // Incremental: changes since the newest backup of this source; differential: since the newest
    // full. Without one, the backup is a full (and says so).
    let (backup_type, parent, note) = match req.backup_type {
        BackupType::Full => (BackupType::Full, None, None),
        _ if !req.tenants.is_empty() => (BackupType::Full, None, Some("a backup of some tenants is always a full one".to_string())),
        wanted => {
            let parent = repo
                .list()?
                .into_iter()
                .rfind(|(_, h)| h.source_fingerprint == fingerprint && is_whole(&h.source_fingerprint) && (wanted == BackupType::Incremental || h.backup_type == "full"));
            let keyless = || Some("reading the parent backup needs the repository's key: without it, this backup is a full one".to_string());
            match (parent, master) {
                (None, _) => (BackupType::Full, None, Some("no earlier full backup of this source in the repository: this backup is a full one".to_string())),
                (Some((path, h)), Some(master)) => {
                    let mut reader = crate::archive::ArchiveReader::open(&path)?;
                    reader.unlock(Some(master), None)?;
                    let basis = match &req.source {
                        SourceSpec::Postgres { .. } => ParentBasis::Postgres(source::postgres::Parent::from_archive(&reader)?),
                        SourceSpec::Sqlite { .. } => ParentBasis::Sqlite(source::sqlite::Parent::from_archive(reader)?),
                    };
                    (wanted, Some((h.archive_id, basis)), None)
                }
                // Without the key: a PostgreSQL parent's plaintext header says enough.
                (Some((_, h)), None) => match (&req.source, source::postgres::Parent::from_header(&h)) {
                    (SourceSpec::Postgres { .. }, Some(p)) => (wanted, Some((h.archive_id, ParentBasis::Postgres(p))), None),
                    (SourceSpec::Sqlite { .. }, _) => (
                        BackupType::Full,
                        None,
                        Some("an incremental backup of a SQLite database compares rows with its parent's, which needs the repository's key: without it, this backup is a full one".to_string()),
                    ),
                    _ => (BackupType::Full, None, keyless()),
                },
            }
        }
    };
    // PostgreSQL: the snapshot is taken before the archive starts, so its header can carry it.
    let pg_snapshot = match &req.source {
        SourceSpec::Postgres { url } => Some(source::postgres::snapshot(url, &req.dump_scope()).await?),
        SourceSpec::Sqlite { .. } => None,
    };
    let type_name = match backup_type {
        BackupType::Full => "full",
        BackupType::Incremental => "incremental",
        BackupType::Differential => "differential",
    };
    let header = ArchiveHeader {
        backup_type: type_name.into(),
        parent_id: parent.as_ref().map(|(id, _)| id.clone()),
        source_kind: req.source.kind().into(),
        source_name: req.source_name.clone(),
        source_fingerprint: fingerprint,
        snapshot_time: snapshot_time.clone(),
        created_at: snapshot_time.clone(),
        compression: if req.zstd_level.is_some() { "zstd".into() } else { "none".into() },
        basis: pg_snapshot.as_ref().map(|snap| {
            let parent = match &parent {
                Some((_, ParentBasis::Postgres(p))) => Some(p),
                _ => None,
            };
            snap.basis(&id, parent)
        }),
        ..header(repo, &id, req.encrypt, key_slots)
    };
    let stamp: String = snapshot_time.chars().filter(char::is_ascii_digit).take(14).collect();
    let dest: PathBuf = match &req.dest {
        Some(d) => d.clone(),
        None => repo.archives_dir().join(format!("{stamp}-{}.{ARCHIVE_EXT}", &id[..8])),
    };
    if req.dest.is_none() {
        crate::storage::backend::at(&repo.archives_dir())?.make_dir()?;
    }
    let signer = match &req.signer {
        Some(s) => s.clone(),
        None => crate::writers::WriterKey::of_default_home()?,
    };
    let mut writer = ArchiveWriter::create(&dest, &header, req.encrypt.then_some(dk), WriteOptions { zstd_level: req.zstd_level, threads: req.jobs, signer: Some(signer.clone()) })?;
    let stats = match &req.source {
        SourceSpec::Sqlite { path } => {
            let basis = match &parent {
                Some((_, ParentBasis::Sqlite(p))) => Some(p),
                _ => None,
            };
            source::sqlite::dump(path, &mut writer, req.include, &req.tenant_column, &req.tenants_table, basis, cancel, progress).await?
        }
        SourceSpec::Postgres { url } => {
            let basis = match &parent {
                Some((_, ParentBasis::Postgres(p))) => Some(p),
                _ => None,
            };
            let snap = pg_snapshot.ok_or_else(|| Error::new(crate::error::ErrorCode::Internal, "the snapshot was not taken"))?;
            source::postgres::dump(url, snap, &mut writer, &req.dump_scope(), basis, cancel, progress).await?
        }
    };
    cancel.check()?;
    let index = writer.index_mut();
    index.table_count = stats.tables;
    index.record_count = stats.rows;
    index.tenant_count = stats.tenant_count;
    let written = writer.finish()?;
    Ok(BackupOutcome {
        id,
        archive: written.path.display().to_string(),
        backup_type,
        parent: parent.map(|(id, _)| id),
        bytes: written.bytes,
        raw_bytes: written.raw_bytes,
        tables: stats.tables,
        rows: stats.rows,
        tenant_count: stats.tenant_count,
        sha256: written.sha256,
        seconds: started.elapsed().as_secs_f64(),
        snapshot_time,
        note,
        warnings: stats.warnings,
        writer: signer.name.clone(),
        writer_key: signer.public_hex(),
    })
}
