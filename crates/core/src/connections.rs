//! Connections: the platform databases Safehold backs up — PostgreSQL servers and SQLite files.
//! Their passwords live in the OS keychain; the catalog only records that one exists.

use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection as _, Row};
use sqlx::AssertSqlSafe;
use ts_rs::TS;
use uuid::Uuid;

use crate::catalog::{audit, now};
use crate::context::Ctx;
use crate::error::{is_unique_violation, Error, ErrorCode, FieldError, Result};
use crate::secrets::{self, connection_account};
pub use crate::source::postgres::{explain_pg_error, CONNECT_TIMEOUT};
pub use crate::source::quote_ident;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum ConnectionKind {
    Postgres,
    Sqlite,
}

/// PostgreSQL's `sslmode`, as libpq spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, sqlx::Type)]
#[serde(rename_all = "kebab-case")]
#[sqlx(rename_all = "kebab-case")]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn ssl_mode(self) -> PgSslMode {
        match self {
            TlsMode::Disable => PgSslMode::Disable,
            TlsMode::Prefer => PgSslMode::Prefer,
            TlsMode::Require => PgSslMode::Require,
            TlsMode::VerifyCa => PgSslMode::VerifyCa,
            TlsMode::VerifyFull => PgSslMode::VerifyFull,
        }
    }
    fn from_ssl_mode(m: PgSslMode) -> Self {
        match m {
            PgSslMode::Disable => TlsMode::Disable,
            PgSslMode::Allow | PgSslMode::Prefer => TlsMode::Prefer,
            PgSslMode::Require => TlsMode::Require,
            PgSslMode::VerifyCa => TlsMode::VerifyCa,
            PgSslMode::VerifyFull => TlsMode::VerifyFull,
        }
    }
}

/// Adds `references` to the connection's declared references (a migration or a restore that ran
/// with them: asked once), keeping the ones it has; audited.
pub async fn remember_references(ctx: &Ctx, id: &str, references: &[String]) -> Result<()> {
    let c = get(ctx, id).await?;
    let mut all = c.references.clone();
    for r in references.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
        if !all.iter().any(|x| x == r) {
            all.push(r.to_string());
        }
    }
    if all == c.references {
        return Ok(());
    }
    sqlx::query("UPDATE connections SET declared_references = ?, updated_at = ? WHERE id = ?")
        .bind(serde_json::to_string(&all).unwrap_or_else(|_| "[]".into()))
        .bind(chrono::Utc::now().to_rfc3339())
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("remember the connection's references", &e))?;
    crate::catalog::audit(&ctx.pool, &ctx.operator_id(), "connection.references", &c.name, "success", Some(&all.join(", "))).await
}

/// A connection as the catalog keeps it (never with its password).
#[derive(Debug, Clone, Serialize, TS, sqlx::FromRow)]
pub struct Connection {
    pub id: String,
    pub name: String,
    pub kind: ConnectionKind,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub database_name: Option<String>,
    pub username: Option<String>,
    pub tls_mode: Option<TlsMode>,
    pub sqlite_path: Option<String>,
    /// Whether a password for it is kept in the OS keychain.
    pub has_password: bool,
    pub tenant_column: String,
    pub tenants_table: String,
    /// References no foreign key declares (`CHILD.COLUMN=PARENT.COLUMN`), declared once: tenant
    /// operations on this connection follow them like foreign keys.
    #[sqlx(json, rename = "declared_references")]
    pub references: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Connection {
    /// A display address without the password: `postgres://user@host:port/db` or `sqlite:///path`.
    pub fn address(&self) -> String {
        match self.kind {
            ConnectionKind::Postgres => format!(
                "postgres://{}@{}:{}/{}",
                self.username.as_deref().unwrap_or(""),
                self.host.as_deref().unwrap_or(""),
                self.port.unwrap_or(5432),
                self.database_name.as_deref().unwrap_or("")
            ),
            ConnectionKind::Sqlite => format!("sqlite://{}", self.sqlite_path.as_deref().unwrap_or("")),
        }
    }
}

/// What a person fills in to add or edit a connection.
#[derive(Debug, Clone, Default, Serialize, Deserialize, TS)]
pub struct ConnectionInput {
    pub name: String,
    pub kind: Option<ConnectionKind>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub database_name: Option<String>,
    pub username: Option<String>,
    pub tls_mode: Option<TlsMode>,
    pub sqlite_path: Option<String>,
    /// `None` keeps the stored password (or none); `Some("")` removes it; otherwise replaces it.
    pub password: Option<String>,
    pub tenant_column: Option<String>,
    pub tenants_table: Option<String>,
}

impl ConnectionInput {
    /// Reads `postgres://user[:password]@host[:port]/db[?sslmode=…]`, `postgresql://…` or
    /// `sqlite:///path/to.db` into an input named `name`.
    pub fn from_url(name: &str, url: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::validation(format!(
                "invalid database URL ({why}); use postgres://user@host:5432/database or sqlite:///path/to.db"
            ))
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(bad("no file path after sqlite://"));
            }
            return Ok(Self {
                name: name.into(),
                kind: Some(ConnectionKind::Sqlite),
                sqlite_path: Some(path.into()),
                ..Default::default()
            });
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(bad("it must start with postgres://, postgresql:// or sqlite://"));
        }
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let opts = PgConnectOptions::from_str(url).map_err(|e| bad(&e.to_string()))?;
        let password = parsed
            .password()
            .map(urlencoding_decode)
            .filter(|p| !p.is_empty());
        let database = parsed.path().trim_start_matches('/');
        Ok(Self {
            name: name.into(),
            kind: Some(ConnectionKind::Postgres),
            host: Some(opts.get_host().to_string()),
            port: Some(i64::from(opts.get_port())),
            database_name: Some(if database.is_empty() { opts.get_username().to_string() } else { database.to_string() }),
            username: Some(opts.get_username().to_string()),
            tls_mode: Some(TlsMode::from_ssl_mode(opts.get_ssl_mode())),
            password,
            ..Default::default()
        })
    }
}

fn urlencoding_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("p={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// What "Test connection" found.
#[derive(Debug, Clone, Serialize, TS)]
pub struct ConnectionReport {
    pub kind: ConnectionKind,
    pub address: String,
    pub server_version: String,
    pub size_bytes: i64,
    pub table_count: i64,
    /// Tables with the tenant column (default `tenant_id`).
    pub tenant_tables: Vec<TenantTable>,
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct TenantTable {
    pub schema: Option<String>,
    pub name: String,
    /// Exact for SQLite; PostgreSQL's statistics estimate otherwise (`None` when never analysed).
    pub rows: Option<i64>,
}

const SELECT: &str = "SELECT id, name, kind, host, port, database_name, username, tls_mode, sqlite_path, \
    has_password, tenant_column, tenants_table, declared_references, created_at, updated_at FROM connections";

pub async fn list(ctx: &Ctx) -> Result<Vec<Connection>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "connection.list", "connections").await?;
    sqlx::query_as(AssertSqlSafe(format!("{SELECT} ORDER BY name")))
        .fetch_all(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("list the connections", &e))
}

pub async fn get(ctx: &Ctx, id: &str) -> Result<Connection> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "connection.get", id).await?;
    sqlx::query_as(AssertSqlSafe(format!("{SELECT} WHERE id = ?")))
        .bind(id)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read a connection", &e))?
        .ok_or_else(|| Error::not_found(format!("no connection has the id {id}")))
}

/// Finds a connection by id or, failing that, by name.
pub async fn find(ctx: &Ctx, id_or_name: &str) -> Result<Connection> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "connection.find", id_or_name).await?;
    let found: Option<Connection> = sqlx::query_as(AssertSqlSafe(format!("{SELECT} WHERE id = ? OR name = ? LIMIT 1")))
        .bind(id_or_name)
        .bind(id_or_name)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read a connection", &e))?;
    found.ok_or_else(|| Error::not_found(format!("no connection is named \"{id_or_name}\"; `safehold connection list` shows them")))
}

/// The fields of a valid input, normalised.
struct Checked {
    kind: ConnectionKind,
    name: String,
    host: Option<String>,
    port: Option<i64>,
    database_name: Option<String>,
    username: Option<String>,
    tls_mode: Option<TlsMode>,
    sqlite_path: Option<String>,
    tenant_column: String,
    tenants_table: String,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn check(input: &ConnectionInput) -> Result<Checked> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, message: &str| errors.push(FieldError { field: field.into(), message: message.into() });
    let name = input.name.trim().to_string();
    if name.is_empty() {
        bad("name", "the connection needs a name");
    }
    let kind = input.kind.unwrap_or(ConnectionKind::Postgres);
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
    let tenant_column = non_empty(&input.tenant_column).unwrap_or_else(|| "tenant_id".into());
    let tenants_table = non_empty(&input.tenants_table).unwrap_or_else(|| "tenants".into());
    if !ident(&tenant_column) {
        bad("tenant_column", "the tenant column must be a plain column name such as tenant_id");
    }
    if !ident(&tenants_table) {
        bad("tenants_table", "the tenants table must be a plain table name such as tenants");
    }
    let mut checked = Checked {
        kind,
        name,
        host: None,
        port: None,
        database_name: None,
        username: None,
        tls_mode: None,
        sqlite_path: None,
        tenant_column,
        tenants_table,
    };
    match kind {
        ConnectionKind::Postgres => {
            checked.host = non_empty(&input.host);
            checked.database_name = non_empty(&input.database_name);
            checked.username = non_empty(&input.username);
            checked.port = Some(input.port.unwrap_or(5432));
            checked.tls_mode = Some(input.tls_mode.unwrap_or(TlsMode::Prefer));
            if checked.host.is_none() {
                bad("host", "give the server's host name or address");
            }
            if !(1..=65535).contains(&input.port.unwrap_or(5432)) {
                bad("port", "the port must be between 1 and 65535");
            }
            if checked.database_name.is_none() {
                bad("database_name", "give the database name");
            }
            if checked.username.is_none() {
                bad("username", "give the user name");
            }
        }
        ConnectionKind::Sqlite => match non_empty(&input.sqlite_path) {
            None => bad("sqlite_path", "choose the SQLite database file"),
            Some(p) if !Path::new(&p).is_absolute() => bad("sqlite_path", "the SQLite file path must be absolute"),
            Some(p) => checked.sqlite_path = Some(p),
        },
    }
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(Error::invalid_fields(errors))
    }
}

fn name_conflict(e: &sqlx::Error, name: &str, what: &str) -> Error {
    if is_unique_violation(e) {
        Error::invalid_fields(vec![FieldError {
            field: "name".into(),
            message: format!("a connection named \"{name}\" already exists; choose another name"),
        }])
    } else {
        Error::catalog(what, e)
    }
}

/// Adds a connection; its password (if any) goes to the keychain. All or nothing: when the
/// keychain refuses, no connection is added.
pub async fn add(ctx: &Ctx, input: ConnectionInput) -> Result<Connection> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "connection.add", &input.name).await?;
    let c = check(&input)?;
    let id = Uuid::new_v4().to_string();
    let password = input.password.filter(|p| !p.is_empty());
    let ts = now();
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("start a transaction", &e))?;
    sqlx::query(
        "INSERT INTO connections (id, name, kind, host, port, database_name, username, tls_mode, sqlite_path, \
         has_password, tenant_column, tenants_table, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(&c.name)
    .bind(c.kind)
    .bind(&c.host)
    .bind(c.port)
    .bind(&c.database_name)
    .bind(&c.username)
    .bind(c.tls_mode)
    .bind(&c.sqlite_path)
    .bind(password.is_some())
    .bind(&c.tenant_column)
    .bind(&c.tenants_table)
    .bind(&ts)
    .bind(&ts)
    .execute(&mut *tx)
    .await
    .map_err(|e| name_conflict(&e, &c.name, "save the connection"))?;
    audit(&mut *tx, &ctx.operator_id(), "connection.add", &c.name, "success", None).await?;
    if let Some(pw) = password {
        let account = connection_account(&id);
        secrets::run(&ctx.secrets, move |s| s.set(&account, &pw)).await?;
    }
    if let Err(e) = tx.commit().await {
        let account = connection_account(&id);
        let _ = secrets::run(&ctx.secrets, move |s| s.delete(&account)).await;
        return Err(Error::catalog("save the connection", &e));
    }
    get(ctx, &id).await
}

/// Edits a connection. The password changes only when the input carries one (see
/// [`ConnectionInput::password`]).
pub async fn update(ctx: &Ctx, id: &str, input: ConnectionInput) -> Result<Connection> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "connection.update", id).await?;
    let before = get(ctx, id).await?;
    let c = check(&input)?;
    let has_password = match &input.password {
        None => before.has_password,
        Some(p) => !p.is_empty(),
    };
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("start a transaction", &e))?;
    sqlx::query(
        "UPDATE connections SET name = ?, kind = ?, host = ?, port = ?, database_name = ?, username = ?, \
         tls_mode = ?, sqlite_path = ?, has_password = ?, tenant_column = ?, tenants_table = ?, updated_at = ? WHERE id = ?",
    )
    .bind(&c.name)
    .bind(c.kind)
    .bind(&c.host)
    .bind(c.port)
    .bind(&c.database_name)
    .bind(&c.username)
    .bind(c.tls_mode)
    .bind(&c.sqlite_path)
    .bind(has_password)
    .bind(&c.tenant_column)
    .bind(&c.tenants_table)
    .bind(now())
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(|e| name_conflict(&e, &c.name, "update the connection"))?;
    audit(&mut *tx, &ctx.operator_id(), "connection.update", &c.name, "success", None).await?;
    if let Some(pw) = input.password {
        let account = connection_account(id);
        secrets::run(&ctx.secrets, move |s| if pw.is_empty() { s.delete(&account) } else { s.set(&account, &pw) })
            .await?;
    }
    tx.commit().await.map_err(|e| Error::catalog("update the connection", &e))?;
    get(ctx, id).await
}

/// Removes a connection and its keychain entry. Refused while a configuration backs it up.
pub async fn remove(ctx: &Ctx, id: &str) -> Result<()> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "connection.remove", id).await?;
    let conn = get(ctx, id).await?;
    let used: Vec<String> =
        sqlx::query_scalar("SELECT configuration_name FROM backup_configurations WHERE connection_id = ?")
            .bind(id)
            .fetch_all(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("check the configurations", &e))?;
    if !used.is_empty() {
        return Err(Error::conflict(format!(
            "the connection \"{}\" is backed up by the configuration(s) {}; delete or change them first",
            conn.name,
            used.join(", ")
        )));
    }
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("start a transaction", &e))?;
    sqlx::query("DELETE FROM connections WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::catalog("remove the connection", &e))?;
    audit(&mut *tx, &ctx.operator_id(), "connection.remove", &conn.name, "success", None).await?;
    if conn.has_password {
        let account = connection_account(id);
        secrets::run(&ctx.secrets, move |s| s.delete(&account)).await?;
    }
    tx.commit().await.map_err(|e| Error::catalog("remove the connection", &e))
}

/// Tests a saved connection, with its password from the keychain.
pub async fn test(ctx: &Ctx, id: &str) -> Result<ConnectionReport> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "connection.test", id).await?;
    let conn = get(ctx, id).await?;
    let password = if conn.has_password {
        let account = connection_account(id);
        secrets::run(&ctx.secrets, move |s| s.get(&account)).await?
    } else {
        None
    };
    let input = ConnectionInput {
        name: conn.name.clone(),
        kind: Some(conn.kind),
        host: conn.host,
        port: conn.port,
        database_name: conn.database_name,
        username: conn.username,
        tls_mode: conn.tls_mode,
        sqlite_path: conn.sqlite_path,
        password,
        tenant_column: Some(conn.tenant_column),
        tenants_table: Some(conn.tenants_table),
    };
    probe(&input).await
}

/// Tests a connection as filled in, before it is saved. Writes nothing.
/// [`probe`] for a signed-in operator who may add connections (it opens any host and port, or
/// any local file as SQLite, and lists its tables): the permission checked, the attempt audited.
pub async fn probe_as(ctx: &Ctx, input: &ConnectionInput) -> Result<ConnectionReport> {
    let what = match check(input) {
        Ok(c) if c.kind == ConnectionKind::Postgres => pg_address(&c),
        Ok(c) => c.sqlite_path.clone().unwrap_or_default(),
        Err(_) => input.name.clone(),
    };
    let who = crate::context::require(ctx, crate::context::Permission::ManageAll, "connection.probe", &what).await?;
    let out = probe(input).await;
    let (outcome, detail) = match &out {
        Ok(r) => ("success", format!("{} tables", r.table_count)),
        Err(e) => ("failure", e.message.clone()),
    };
    audit(&ctx.pool, &who.id, "connection.probe", &what, outcome, Some(&detail)).await?;
    out
}

pub async fn probe(input: &ConnectionInput) -> Result<ConnectionReport> {
    let c = check(input)?;
    match c.kind {
        ConnectionKind::Postgres => probe_postgres(&c, input.password.as_deref()).await,
        ConnectionKind::Sqlite => probe_sqlite(&c).await,
    }
}

fn pg_address(c: &Checked) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        c.username.as_deref().unwrap_or(""),
        c.host.as_deref().unwrap_or(""),
        c.port.unwrap_or(5432),
        c.database_name.as_deref().unwrap_or("")
    )
}


async fn probe_postgres(c: &Checked, password: Option<&str>) -> Result<ConnectionReport> {
    let address = pg_address(c);
    let user = c.username.clone().unwrap_or_default();
    let database = c.database_name.clone().unwrap_or_default();
    let mut opts = PgConnectOptions::new()
        .host(c.host.as_deref().unwrap_or("localhost"))
        .port(u16::try_from(c.port.unwrap_or(5432)).unwrap_or(5432))
        .database(&database)
        .username(&user)
        .ssl_mode(c.tls_mode.unwrap_or(TlsMode::Prefer).ssl_mode())
        .application_name("safehold")
        .log_statements(tracing::log::LevelFilter::Off);
    if let Some(pw) = password.filter(|p| !p.is_empty()) {
        opts = opts.password(pw);
    }
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(&opts)).await {
        Err(_) => return Err(explain_pg_error(&address, &user, &database, &sqlx::Error::PoolTimedOut)),
        Ok(Err(e)) => return Err(explain_pg_error(&address, &user, &database, &e)),
        Ok(Ok(conn)) => conn,
    };
    let q = |what: &'static str| {
        let address = address.clone();
        move |e: sqlx::Error| Error::new(ErrorCode::Database, format!("{address}: could not read {what}: {e}"))
    };
    let version: String = sqlx::query_scalar("SELECT current_setting('server_version')")
        .fetch_one(&mut conn)
        .await
        .map_err(q("the server version"))?;
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut conn)
        .await
        .map_err(q("the database size"))?;
    let table_count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(q("the tables"))?;
    let rows = sqlx::query(
        "SELECT n.nspname, c.relname, CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE a.attname = $1 AND NOT a.attisdropped AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
    )
    .bind(&c.tenant_column)
    .fetch_all(&mut conn)
    .await
    .map_err(q("the tenant tables"))?;
    let tenant_tables = rows
        .iter()
        .map(|r| TenantTable { schema: r.get(0), name: r.get(1), rows: r.get(2) })
        .collect();
    let _ = conn.close().await;
    Ok(ConnectionReport {
        kind: ConnectionKind::Postgres,
        address,
        server_version: format!("PostgreSQL {version}"),
        size_bytes: size,
        table_count,
        tenant_tables,
    })
}


async fn probe_sqlite(c: &Checked) -> Result<ConnectionReport> {
    let path = c.sqlite_path.clone().unwrap_or_default();
    let address = format!("sqlite://{path}");
    let meta = std::fs::metadata(&path).map_err(|e| {
        Error::new(
            if e.kind() == std::io::ErrorKind::NotFound { ErrorCode::NotFound } else { ErrorCode::Io },
            format!("cannot open {path}: {e}; choose an existing SQLite database file"),
        )
    })?;
    let opts = SqliteConnectOptions::new().filename(&path).read_only(true).create_if_missing(false);
    let not_sqlite = |e: sqlx::Error| {
        Error::new(ErrorCode::Validation, format!("{path} is not a readable SQLite database: {e}"))
    };
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.map_err(not_sqlite)?;
    let version: String = sqlx::query_scalar("SELECT sqlite_version()").fetch_one(&mut conn).await.map_err(not_sqlite)?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(not_sqlite)?;
    let mut tenant_tables = Vec::new();
    for t in &tables {
        let has: i64 = sqlx::query_scalar("SELECT count(*) FROM pragma_table_info(?) WHERE name = ?")
            .bind(t)
            .bind(&c.tenant_column)
            .fetch_one(&mut conn)
            .await
            .map_err(not_sqlite)?;
        if has > 0 {
            let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", quote_ident(t))))
                .fetch_one(&mut conn)
                .await
                .map_err(not_sqlite)?;
            tenant_tables.push(TenantTable { schema: None, name: t.clone(), rows: Some(rows) });
        }
    }
    let _ = conn.close().await;
    Ok(ConnectionReport {
        kind: ConnectionKind::Sqlite,
        address,
        server_version: format!("SQLite {version}"),
        size_bytes: i64::try_from(meta.len()).unwrap_or(i64::MAX),
        table_count: i64::try_from(tables.len()).unwrap_or(i64::MAX),
        tenant_tables,
    })
}

/// Builds the source URL of a connection (with its password from the keychain, in memory only).
pub async fn source_of(ctx: &Ctx, connection_id: &str) -> Result<(crate::source::SourceSpec, Connection)> {
    let conn = get(ctx, connection_id).await?;
    let spec = match conn.kind {
        ConnectionKind::Sqlite => crate::source::SourceSpec::Sqlite { path: conn.sqlite_path.clone().unwrap_or_default().into() },
        ConnectionKind::Postgres => {
            let mut url = url::Url::parse("postgres://localhost/").map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?;
            let _ = url.set_host(conn.host.as_deref());
            let _ = url.set_port(conn.port.and_then(|p| u16::try_from(p).ok()));
            let _ = url.set_username(conn.username.as_deref().unwrap_or(""));
            url.set_path(conn.database_name.as_deref().unwrap_or(""));
            if let Some(tls) = conn.tls_mode {
                let mode = serde_json::to_value(tls).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                url.query_pairs_mut().append_pair("sslmode", &mode);
            }
            if conn.has_password {
                let account = connection_account(&conn.id);
                if let Some(pw) = secrets::run(&ctx.secrets, move |s| s.get(&account)).await? {
                    let _ = url.set_password(Some(&pw));
                }
            }
            crate::source::SourceSpec::Postgres { url: url.to_string() }
        }
    };
    Ok((spec, conn))
}
