//! Server backups: every database of a PostgreSQL server and the server's globals (roles, their
//! memberships and settings, tablespaces' names, each database's properties and grants).
//!
//! Each database is backed up as an ordinary archive of the repository (listed, verified, kept by
//! retention and restorable alone like any other); the **set** is one more archive, under
//! `servers/` of the repository, whose one section holds the globals and names the databases'
//! archives. The set is written last: a server backup that fails or is cancelled removes the
//! archives it made, so there is a set with all its databases or none. (PostgreSQL has no
//! snapshot across databases: each database is consistent in itself, as with `pg_dumpall`.)
//!
//! A restore puts the whole set — or some of its databases — onto a server: the roles first
//! (`all`, those the databases `needed`, or `none`), then each database built under a temporary
//! name with its source's properties and renamed when complete. What the target already has and
//! what its version cannot hold are in the plan before anything is written; a failure drops the
//! databases and roles the restore made.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::archive::{ArchiveHeader, ArchiveReader, ArchiveWriter, WriteOptions};
use crate::backup::{self, BackupRequest};
use crate::error::{Error, ErrorCode, Result};
use crate::keys::unlock::KeySources;
use crate::repository::{Repository, ARCHIVE_EXT};
use crate::source::pg_globals::{self, DatabaseProps, Globals, Role};
use crate::source::postgres::{self as pg, qi};
use crate::source::{self, CancelToken, ProgressSink, SourceSpec};

/// Where a repository keeps its server sets.
pub fn servers_dir(repo: &Repository) -> PathBuf {
    repo.dir.join("servers")
}

/// A server backup asked for: the server, and how each database is backed up (`each`: its
/// compression, encryption, connections, signer; its source is set per database).
pub struct ServerBackupRequest {
    pub url: String,
    /// Databases left out (`*` matches any run of characters).
    pub exclude: Vec<String>,
    /// Also the roles' password hashes (sealed with the rest; needs a superuser).
    pub with_passwords: bool,
    pub each: BackupRequest,
}

/// One database of a set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetMember {
    pub database: String,
    pub archive_id: String,
    pub tables: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// What a set's archive holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetManifest {
    pub set_id: String,
    pub server: String,
    pub taken_at: String,
    pub databases: Vec<SetMember>,
    /// Databases listed at the start that were gone when their turn came.
    pub vanished: Vec<String>,
    pub globals: Globals,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerBackupOutcome {
    pub set_id: String,
    /// The set's archive, its size and checksum.
    pub archive: String,
    pub archive_bytes: u64,
    pub sha256: String,
    /// Each database's archive, as the repository keeps it.
    pub member_archives: Vec<String>,
    pub taken_at: String,
    pub databases: Vec<SetMember>,
    pub roles: usize,
    pub memberships: usize,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

/// The server's administrative URL: `url` as given, or its `postgres` database when it names none.
fn admin_url(url: &str) -> Result<String> {
    let u = url::Url::parse(url).map_err(|e| Error::validation(format!("invalid PostgreSQL URL: {e}")).caused_by(&e))?;
    if u.path().trim_start_matches('/').is_empty() {
        pg::database_url(url, "postgres")
    } else {
        Ok(url.to_string())
    }
}

/// Backs up every database of the server and its globals into `repo`, as one set.
pub async fn backup(repo: &Repository, master: Option<&crate::archive::SecretKey>, req: &ServerBackupRequest, cancel: &CancelToken, progress: &ProgressSink) -> Result<ServerBackupOutcome> {
    let started = std::time::Instant::now();
    if req.with_passwords && !req.each.encrypt {
        return Err(Error::validation("password hashes are only kept sealed: leave out --no-encrypt, or --with-passwords"));
    }
    let admin = admin_url(&req.url)?;
    let mut conn = pg::connect(&admin).await?;
    let names = pg_globals::databases(&mut conn, &req.exclude).await?;
    if names.is_empty() {
        return Err(Error::validation(format!("the server {} has no database to back up (templates and excluded databases are left out)", source::redact(&req.url))));
    }
    let globals = pg_globals::read(&mut conn, &names, req.with_passwords).await?;
    let _ = conn.close().await;
    let mut members = Vec::new();
    let mut made: Vec<String> = Vec::new();
    let mut vanished = Vec::new();
    let mut warnings = Vec::new();
    for name in &names {
        let url = pg::database_url(&req.url, name)?;
        let mut each = req.each.clone();
        each.source = SourceSpec::Postgres { url: url.clone() };
        each.source_name = source::redact(&url);
        match backup::run_with(repo, master, &each, cancel, progress).await {
            Ok(out) => {
                made.push(out.archive.clone());
                warnings.extend(out.warnings.iter().map(|w| format!("{name}: {w}")));
                members.push(SetMember { database: name.clone(), archive_id: out.id, tables: out.tables, rows: out.rows, bytes: out.bytes });
            }
            Err(e) if !database_exists(&admin, name).await => {
                warnings.push(format!("database {name} was dropped while the server was backed up: it is not in the set ({})", e.message));
                vanished.push(name.clone());
            }
            Err(e) => {
                remove(&made);
                return Err(Error::new(e.code, format!("the server backup stopped at database {name}: {}; the {} archives it had made were removed", e.message, made.len())).caused_by(&e));
            }
        }
    }
    let set_id = uuid::Uuid::new_v4().to_string();
    let manifest = SetManifest { set_id: set_id.clone(), server: source::redact(&req.url), taken_at: crate::catalog::now(), databases: members.clone(), vanished, globals };
    let written = write_set(repo, master, req, &manifest).await;
    let set = match written {
        Ok(a) => a,
        Err(e) => {
            remove(&made);
            return Err(Error::new(e.code, format!("the server set could not be written: {}; the databases' archives were removed", e.message)).caused_by(&e));
        }
    };
    Ok(ServerBackupOutcome {
        set_id,
        archive: set.path.display().to_string(),
        archive_bytes: set.bytes,
        sha256: set.sha256,
        member_archives: made,
        taken_at: manifest.taken_at.clone(),
        roles: manifest.globals.roles.len(),
        memberships: manifest.globals.memberships.len(),
        databases: members,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn database_exists(admin: &str, name: &str) -> bool {
    let Ok(mut c) = pg::connect(admin).await else { return true };
    let found = sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)").bind(name).fetch_one(&mut c).await.unwrap_or(true);
    let _ = c.close().await;
    found
}

fn remove(archives: &[String]) {
    for a in archives {
        if let Err(e) = crate::storage::backend::at(std::path::Path::new(a)).and_then(|b| b.delete()) {
            tracing::warn!("could not remove {a} of an unfinished server backup: {}", e.message);
        }
    }
}

async fn write_set(repo: &Repository, master: Option<&crate::archive::SecretKey>, req: &ServerBackupRequest, manifest: &SetManifest) -> Result<crate::archive::WrittenArchive> {
    let id = manifest.set_id.clone();
    let (dk, key_slots) = backup::seal_data_key(repo, master, req.each.encrypt, &id)?;
    let fingerprint = format!("server:{}", source::redact(&admin_url(&req.url)?));
    let header = ArchiveHeader {
        backup_type: "server".into(),
        source_kind: "postgres-server".into(),
        source_name: manifest.server.clone(),
        source_fingerprint: fingerprint,
        snapshot_time: manifest.taken_at.clone(),
        compression: if req.each.zstd_level.is_some() { "zstd".into() } else { "none".into() },
        ..backup::header(repo, &id, req.each.encrypt, key_slots)
    };
    let dir = servers_dir(repo);
    crate::storage::backend::at(&dir)?.make_dir()?;
    let stamp: String = manifest.taken_at.chars().filter(char::is_ascii_digit).take(14).collect();
    let dest = dir.join(format!("{stamp}-{}.{ARCHIVE_EXT}", &id[..8]));
    let signer = match &req.each.signer {
        Some(s) => s.clone(),
        None => crate::writers::WriterKey::of_default_home()?,
    };
    let mut writer = ArchiveWriter::create(&dest, &header, req.each.encrypt.then_some(dk), WriteOptions { zstd_level: req.each.zstd_level, threads: 1, signer: Some(signer) })?;
    {
        let mut section = writer.section("server", "server");
        section.write(&serde_json::to_vec(manifest).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?)?;
        section.finish()?;
    }
    let index = writer.index_mut();
    index.table_count = manifest.databases.iter().map(|m| m.tables).sum();
    index.record_count = manifest.databases.iter().map(|m| m.rows).sum();
    writer.finish()
}

/// The sets of a repository, oldest first (their headers need no key).
pub fn sets(repo: &Repository) -> Result<Vec<(PathBuf, ArchiveHeader)>> {
    let mut out = Vec::new();
    for p in crate::repository::archives_in(&servers_dir(repo))? {
        if let Ok(r) = ArchiveReader::open(&p) {
            out.push((p, r.header));
        }
    }
    out.sort_by(|a, b| a.1.snapshot_time.cmp(&b.1.snapshot_time));
    Ok(out)
}

/// Opens a set (the newest without `id`; an id's first characters are enough) with `keys`.
pub async fn open_set(repo: &Repository, keys: &KeySources, id: Option<&str>) -> Result<SetManifest> {
    let all = sets(repo)?;
    let found = match id {
        None => all.last(),
        Some(id) => {
            let matching: Vec<_> = all.iter().filter(|(_, h)| h.archive_id.starts_with(id)).collect();
            if matching.len() > 1 {
                return Err(Error::validation(format!("{id} names {} server backups: give more of its id", matching.len())));
            }
            matching.first().copied()
        }
    };
    let Some((path, _)) = found else {
        return Err(Error::not_found(match id {
            Some(id) => format!("no server backup {id} in {}", repo.dir.display()),
            None => format!("{} holds no server backup (safehold backup --all-databases makes one)", repo.dir.display()),
        }));
    };
    let readers = keys.open_chain(path, Some(repo)).await?;
    let reader = readers.into_iter().last().ok_or_else(|| Error::new(ErrorCode::Internal, "an empty set"))?;
    let index = reader.index()?;
    let mut bytes = Vec::new();
    reader.read_section(&index, "server", &mut |b| {
        bytes.extend_from_slice(b);
        Ok(())
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::validation(format!("the server backup {} is not readable: {e}", path.display())).caused_by(&e))
}

/// Which roles a server restore creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum RolesMode {
    /// Every role of the set.
    All,
    /// Those the restored databases need: owners, grantees, roles with settings in them, and
    /// the roles these are members of.
    #[default]
    Needed,
    /// None: databases owned by a missing role are owned by the restoring user.
    None,
}

pub struct ServerRestoreRequest {
    /// The repository.
    pub from: PathBuf,
    /// The set (default: the newest).
    pub set_id: Option<String>,
    /// The server to restore onto (`postgres://user@host:5432/`).
    pub target: String,
    /// Only these databases of the set (default: every one).
    pub databases: Vec<String>,
    pub roles: RolesMode,
    /// Leave out what the target's version cannot hold (named in the plan) instead of refusing.
    pub skip_unsupported: bool,
    /// Give each database's objects their owners and grants, as in the source.
    pub owners: bool,
    pub privileges: bool,
    pub jobs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedDatabase {
    pub database: String,
    pub archive_id: String,
    pub tables: u64,
    pub rows: u64,
    /// The target has a database of that name: restored into when it is empty (as a new
    /// server's `postgres` is), refused otherwise.
    pub exists: bool,
    /// How many tables and views the target's database of that name has.
    pub existing_tables: i64,
}

impl PlannedDatabase {
    pub fn action(&self) -> &'static str {
        match (self.exists, self.existing_tables) {
            (false, _) => "created",
            (true, 0) => "exists, empty: restored into",
            _ => "EXISTS with tables: refused",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerRestorePlan {
    pub set_id: String,
    pub taken_at: String,
    pub source: String,
    pub source_version: String,
    pub target: String,
    pub target_version: String,
    pub roles_created: Vec<String>,
    pub roles_existing: Vec<String>,
    pub memberships: usize,
    pub databases: Vec<PlannedDatabase>,
    /// What the target's version cannot hold, each named with the reason.
    pub unsupported: Vec<String>,
    /// Of `unsupported`, what `--skip-unsupported` cannot leave out (a restore is refused).
    pub cannot_leave_out: Vec<String>,
    pub warnings: Vec<String>,
}

struct Planned {
    plan: ServerRestorePlan,
    repo: Repository,
    /// The roles of the set the restore makes (or finds).
    roles: Vec<String>,
    manifest: SetManifest,
    target: pg_globals::Target,
}

fn chosen<'a>(m: &'a SetManifest, names: &[String]) -> Result<Vec<&'a SetMember>> {
    if names.is_empty() {
        return Ok(m.databases.iter().collect());
    }
    let mut out = Vec::new();
    for n in names {
        match m.databases.iter().find(|d| &d.database == n) {
            Some(d) => out.push(d),
            None => {
                return Err(Error::not_found(format!(
                    "the server backup {} has no database {n}; it has {}",
                    &m.set_id[..8],
                    m.databases.iter().map(|d| d.database.as_str()).collect::<Vec<_>>().join(", ")
                )))
            }
        }
    }
    Ok(out)
}

fn roles_for<'a>(m: &'a SetManifest, dbs: &[&DatabaseProps], mode: RolesMode, inside: &std::collections::BTreeSet<String>) -> Vec<&'a Role> {
    match mode {
        RolesMode::All => m.globals.roles.iter().collect(),
        RolesMode::Needed => pg_globals::needed(&m.globals, dbs, inside),
        RolesMode::None => Vec::new(),
    }
}

async fn open_member(repo: &Repository, m: &SetMember, keys: &KeySources) -> Result<crate::chain::Opened> {
    crate::chain::open(&crate::chain::Pick { from: &repo.dir, at: None, backup_id: Some(&m.archive_id), source_name: None }, keys).await.map_err(|e| {
        Error::new(e.code, format!("the archive {} of database {} could not be opened: {} (retention or a hand may have removed it)", &m.archive_id[..8], m.database, e.message)).caused_by(&e)
    })
}

async fn plan_inner(req: &ServerRestoreRequest, keys: &KeySources) -> Result<Planned> {
    let repo = Repository::open(&req.from)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", req.from.display())))?;
    let manifest = open_set(&repo, keys, req.set_id.as_deref()).await?;
    let members = chosen(&manifest, &req.databases)?;
    let admin = admin_url(&req.target)?;
    let mut conn = pg::connect(&admin).await?;
    let target = pg_globals::target(&mut conn).await?;
    let _ = conn.close().await;
    let props: Vec<&DatabaseProps> = members.iter().filter_map(|m| manifest.globals.databases.iter().find(|d| d.name == m.database)).collect();
    // Each database's schema: the roles its objects' owners and grants name (when restored), and
    // what of it the target's version cannot hold.
    let mut schemas = Vec::new();
    for m in &members {
        let opened = open_member(&repo, m, keys).await?;
        if let Some((reader, index)) = opened.chain.last() {
            schemas.push((m.database.clone(), pg::archived_schema(reader, index)?));
        }
    }
    let referenced = pg::Restoring { owners: req.owners, privileges: req.privileges, ..Default::default() };
    let inside: std::collections::BTreeSet<String> = schemas.iter().flat_map(|(_, s)| referenced.missing_roles(s)).collect();
    let roles = roles_for(&manifest, &props, req.roles, &inside);
    let mut warnings = Vec::new();
    let mode = match req.roles {
        RolesMode::All => "all",
        RolesMode::Needed => "needed",
        RolesMode::None => "none",
    };
    for d in &props {
        if !target.roles.contains(&d.owner) && !roles.iter().any(|r| r.name == d.owner) {
            warnings.push(format!("database {} is owned by {}, which the target lacks and this restore does not create (--roles {mode}): the restoring user will own it", d.name, d.owner));
        }
    }
    if !manifest.globals.tablespaces.is_empty() {
        warnings.push(format!(
            "tablespaces are not created (their folders are on the source's machine): {}; make them on the target first, or objects in them are named below and made in the default tablespace with --skip-unsupported",
            manifest.globals.tablespaces.iter().map(|t| format!("{} at {}", t.name, t.location)).collect::<Vec<_>>().join(", ")
        ));
    }
    if roles.iter().any(|r| r.password_hash.is_none() && r.login) && req.roles != RolesMode::None {
        warnings.push("roles that log in are created without a password (the backup was taken without --with-passwords): set them with ALTER ROLE … PASSWORD".into());
    }
    let mut unsupported = pg_globals::check(&manifest.globals, &roles, &props, &target);
    let present: Vec<String> = target.roles.iter().cloned().chain(roles.iter().map(|r| r.name.clone())).collect();
    let on = pg::Restoring { owners: req.owners, privileges: req.privileges, roles: present, ..pg::Restoring::on(&admin, req.skip_unsupported, req.owners, req.privileges).await? };
    let mut cannot_leave_out = Vec::new();
    for (database, schema) in &schemas {
        for (what, can) in pg::unsupported(&on, schema) {
            let what = format!("database {database}: {what}");
            if !can {
                cannot_leave_out.push(what.clone());
            }
            unsupported.push(what);
        }
        let missing = on.missing_roles(schema);
        if !missing.is_empty() {
            warnings.push(format!("database {database}: neither the target nor this restore has the roles {}: what they own is owned by the restoring user, what they were granted is not granted, and their user mappings are left out", missing.join(", ")));
        }
    }
    let mut planned = Vec::new();
    for m in &members {
        let exists = target.databases.contains(&m.database);
        let existing_tables = if exists {
            let mut c = pg::connect(&pg::database_url(&req.target, &m.database)?).await?;
            let n = pg::count_user_relations(&mut c).await?;
            let _ = c.close().await;
            n
        } else {
            0
        };
        planned.push(PlannedDatabase { database: m.database.clone(), archive_id: m.archive_id.clone(), tables: m.tables, rows: m.rows, exists, existing_tables });
    }
    let plan = ServerRestorePlan {
        set_id: manifest.set_id.clone(),
        taken_at: manifest.taken_at.clone(),
        source: manifest.server.clone(),
        source_version: manifest.globals.server_version.clone(),
        target: source::redact(&req.target),
        target_version: target.version.clone(),
        roles_created: roles.iter().filter(|r| !target.roles.contains(&r.name)).map(|r| r.name.clone()).collect(),
        roles_existing: roles.iter().filter(|r| target.roles.contains(&r.name)).map(|r| r.name.clone()).collect(),
        memberships: pg_globals::memberships_for(&manifest.globals, &roles).len(),
        databases: planned,
        unsupported,
        cannot_leave_out,
        warnings,
    };
    let roles = roles.iter().map(|r| r.name.clone()).collect();
    Ok(Planned { plan, repo, roles, manifest, target })
}

/// What a server restore would do, found without writing anything.
pub async fn plan(req: &ServerRestoreRequest, keys: &KeySources) -> Result<ServerRestorePlan> {
    Ok(plan_inner(req, keys).await?.plan)
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerRestoreOutcome {
    pub plan: ServerRestorePlan,
    pub roles_created: Vec<String>,
    pub databases: Vec<String>,
    pub rows: u64,
    pub seconds: f64,
}

/// Restores a set onto a server (see the module's comment). All or nothing: on a failure or a
/// cancel the databases and roles it made are dropped.
pub async fn restore(req: &ServerRestoreRequest, keys: &KeySources, cancel: &CancelToken, progress: &ProgressSink) -> Result<ServerRestoreOutcome> {
    let started = std::time::Instant::now();
    let Planned { plan, repo, roles, manifest, target } = plan_inner(req, keys).await?;
    let taken: Vec<String> = plan.databases.iter().filter(|d| d.exists && d.existing_tables > 0).map(|d| format!("{} ({} tables)", d.database, d.existing_tables)).collect();
    if !taken.is_empty() {
        return Err(Error::conflict(format!(
            "the target server already has {}: a server restore only creates databases or fills empty ones; drop them first, choose the others with --database, or restore one alone into a new name (safehold restore --backup ID --target …/NEW --create); nothing was written",
            taken.join(", ")
        )));
    }
    let blocking: Vec<&str> = plan.unsupported.iter().filter(|u| !req.skip_unsupported || plan.cannot_leave_out.contains(u)).map(String::as_str).collect();
    if !blocking.is_empty() {
        return Err(Error::validation(format!(
            "PostgreSQL {} cannot hold {} of what this server backup has; nothing was written:\n  {}{}",
            plan.target_version,
            blocking.len(),
            blocking.join("\n  "),
            if plan.cannot_leave_out.is_empty() { "\nadd --skip-unsupported to restore without them" } else { "" }
        )));
    }
    let admin = admin_url(&req.target)?;
    let members = chosen(&manifest, &req.databases)?;
    let roles: Vec<&Role> = manifest.globals.roles.iter().filter(|r| roles.contains(&r.name)).collect();
    let skip = if req.skip_unsupported { plan.unsupported.clone() } else { Vec::new() };


    let mut conn = pg::connect(&admin).await?;
    let mut created_roles = Vec::new();
    let mut done: Vec<String> = Vec::new();
    let mut filled: Vec<String> = Vec::new();
    let mut rows = 0u64;
    let result: Result<()> = async {
        {
            let mut tx = conn.begin().await.map_err(pg::q("start creating the roles"))?;
            created_roles = pg_globals::create_roles(&mut tx, &manifest.globals, &roles, &target, &skip).await?;
            tx.commit().await.map_err(pg::q("commit the roles"))?;
        }
        let now_roles: Vec<String> = sqlx::query_scalar("SELECT rolname::text FROM pg_roles").fetch_all(&mut conn).await.map_err(pg::q("read the roles"))?;
        // How each database's schema is made: what the target cannot hold left out as the plan
        // said (or refused above), owners and grants when asked, to the roles there now.
        let how = pg::Restoring { roles: now_roles.clone(), ..pg::Restoring::on(&admin, req.skip_unsupported, req.owners, req.privileges).await? };
        // New databases first, each built under a temporary name; then the empty ones the
        // target has (a new server's `postgres`), each in one transaction.
        let in_place: Vec<&str> = plan.databases.iter().filter(|d| d.exists).map(|d| d.database.as_str()).collect();
        for m in members.iter().filter(|m| !in_place.contains(&m.database.as_str())) {
            cancel.check()?;
            let Some(d) = manifest.globals.databases.iter().find(|d| d.name == m.database) else { continue };
            let url = pg::database_url(&req.target, &m.database)?;
            let building = pg::start_building_with(&url, &pg_globals::create_options(d, &target, now_roles.contains(&d.owner)))
                .await?
                .ok_or_else(|| Error::conflict(format!("the database {} appeared on the target while it was restored; nothing of it was written", m.database)))?;
            let step: Result<u64> = async {
                let opened = open_member(&repo, m, keys).await?;
                let n = pg::restoring(how.clone(), pg::restore_parallel(&opened.chain, &building.url, req.jobs.max(1), cancel, progress)).await?;
                pg_globals::apply_database(&mut conn, building.name(), d, &manifest.globals, &target, &skip, false).await?;
                Ok(n)
            }
            .await;
            match step {
                Ok(n) => {
                    building.finish().await?;
                    rows += n;
                    done.push(m.database.clone());
                }
                Err(e) => {
                    building.abandon().await;
                    return Err(Error::new(e.code, format!("database {}: {}", m.database, e.message)).caused_by(&e));
                }
            }
        }
        for m in members.iter().filter(|m| in_place.contains(&m.database.as_str())) {
            cancel.check()?;
            let Some(d) = manifest.globals.databases.iter().find(|d| d.name == m.database) else { continue };
            let url = pg::database_url(&req.target, &m.database)?;
            let opened = open_member(&repo, m, keys).await?;
            rows += pg::restoring(how.clone(), pg::restore(&opened.chain, &url, false, cancel, progress)).await.map_err(|e| Error::new(e.code, format!("database {}: {}", m.database, e.message)).caused_by(&e))?;
            pg_globals::apply_database(&mut conn, &m.database, d, &manifest.globals, &target, &skip, now_roles.contains(&d.owner)).await?;
            filled.push(m.database.clone());
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        // All or nothing: what this restore made goes with it.
        for db in &done {
            let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", qi(db)))).execute(&mut conn).await;
        }
        let left = pg_globals::drop_roles(&mut conn, &created_roles).await;
        let _ = conn.close().await;
        let mut tail = if left.is_empty() { "the databases and roles it had made were dropped".to_string() } else { format!("the databases it had made were dropped; the roles {} could not be (they own objects made meanwhile)", left.join(", ")) };
        if !filled.is_empty() {
            tail.push_str(&format!("; the empty databases {} it had filled keep what was restored into them", filled.join(", ")));
        }
        return Err(Error::new(e.code, format!("the server restore failed: {}; {tail}", e.message)).caused_by(&e));
    }
    let _ = conn.close().await;
    done.extend(filled);
    Ok(ServerRestoreOutcome { plan, roles_created: created_roles, databases: done, rows, seconds: started.elapsed().as_secs_f64() })
}
