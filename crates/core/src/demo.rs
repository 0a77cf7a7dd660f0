//! The embedded demo platform: a multi-tenant SaaS database in SQLite, generated on first launch
//! (and by `safehold demo`) so a new user has something real to back up with nothing installed.
//! Deterministic: the same seed gives the same rows.

use std::path::{Path, PathBuf};

use chrono::{Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection as _, SqliteConnection};
use ts_rs::TS;
use uuid::Uuid;

use crate::catalog::{audit, now};
use crate::context::Ctx;
use crate::error::{Error, ErrorCode, Result};

pub const DEMO_CONNECTION: &str = "Demo platform";
pub const DEMO_STORAGE: &str = "Local backups";
pub const DEMO_POSTGRES_CONNECTION: &str = "Demo platform (PostgreSQL)";
pub const DEMO_CONFIGURATION: &str = "Daily demo backup";
const SETTING: &str = "demo_initialized";

/// What the demo set-up did.
#[derive(Debug, Clone, Serialize, TS)]
pub struct DemoReport {
    /// False when the demo was already there and nothing was created.
    pub created: bool,
    pub database_path: String,
    pub tenants: i64,
    pub rows: i64,
}

const SCHEMA: &str = r#"
CREATE TABLE tenants (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  slug TEXT NOT NULL UNIQUE,
  plan TEXT NOT NULL CHECK (plan IN ('free', 'team', 'business', 'enterprise')),
  region TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active', 'trial', 'suspended')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE users (
  id TEXT PRIMARY KEY NOT NULL,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  email TEXT NOT NULL,
  full_name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'guest')),
  locale TEXT NOT NULL,
  last_login_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  UNIQUE (tenant_id, email)
);
CREATE TABLE projects (
  id TEXT PRIMARY KEY NOT NULL,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  owner_id TEXT NOT NULL REFERENCES users(id),
  name TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active', 'archived', 'draft')),
  budget_cents INTEGER,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE documents (
  id TEXT PRIMARY KEY NOT NULL,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  project_id TEXT NOT NULL REFERENCES projects(id),
  author_id TEXT NOT NULL REFERENCES users(id),
  title TEXT NOT NULL,
  body TEXT NOT NULL,
  tags TEXT NOT NULL DEFAULT '[]',
  size_bytes INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  user_id TEXT REFERENCES users(id),
  kind TEXT NOT NULL,
  payload TEXT NOT NULL,
  occurred_at TEXT NOT NULL
);
CREATE INDEX users_tenant ON users(tenant_id);
CREATE INDEX projects_tenant ON projects(tenant_id);
CREATE INDEX documents_tenant ON documents(tenant_id);
CREATE INDEX documents_project ON documents(project_id);
CREATE INDEX events_tenant_time ON events(tenant_id, occurred_at);
"#;

const COMPANY: [&str; 25] = [
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Soylent", "Wonka", "Stark", "Tyrell",
    "Cyberdyne", "Massive Dynamic", "Oscorp", "Pied Piper", "Nakatomi", "Müller & Söhne", "Société Lumière",
    "Øresund", "Zürich Ventures", "Nordlys", "東京データ", "São Paulo Tech", "Kraków Systems", "Dunder Mifflin", "Aperture",
];
const SUFFIX: [&str; 8] = ["Corp", "Labs", "GmbH", "Inc.", "Studio", "Group", "SA", "Holdings"];
const FIRST: [&str; 24] = [
    "Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Dennis", "Frances", "Ken", "Radia", "José", "Zoë",
    "Björn", "Anaïs", "Søren", "Chloé", "Łukasz", "Mei", "Hiroshi", "Priya", "Olusegun", "Fatima", "Ivan", "Noor",
];
const LAST: [&str; 20] = [
    "Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Ritchie", "Allen", "Thompson", "Perlman",
    "García", "O'Brien", "Müller", "Ångström", "Nakamura", "Kowalski", "Okafor", "Haddad", "Petrov", "Singh",
];
const WORDS: [&str; 30] = [
    "roadmap", "invoice", "quarterly", "review", "onboarding", "migration", "launch", "budget", "design", "spec",
    "retro", "incident", "postmortem", "contract", "proposal", "backlog", "release", "audit", "forecast", "pricing",
    "hiring", "security", "compliance", "analytics", "dashboard", "customer", "support", "pipeline", "vendor", "policy",
];
const EVENT_KINDS: [&str; 8] =
    ["login", "logout", "document.created", "document.updated", "project.created", "invite.sent", "export.requested", "settings.changed"];

fn uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid().to_string()
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn sentence(rng: &mut StdRng, words: usize) -> String {
    (0..words).map(|_| pick(rng, &WORDS)).collect::<Vec<_>>().join(" ")
}

/// Writes the demo platform database to `path` (replacing nothing: the file must not exist).
/// Written to a temporary file and renamed, so a failure leaves no half-built database.
pub async fn generate(path: &Path, seed: u64) -> Result<(i64, i64)> {
    if path.exists() {
        return Err(Error::conflict(format!("{} already exists; the demo is not regenerated over it", path.display())));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::private::create_dir_all(dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), &e))?;
    let partial = crate::private::partial_beside(path);
    drop(crate::private::create_new(&partial).map_err(|e| Error::io(format!("cannot create {}", partial.display()), &e))?);
    let result = write_demo(&partial, seed).await;
    match result {
        Ok(counts) => {
            std::fs::rename(&partial, path).map_err(|e| Error::io(format!("cannot move the demo into {}", path.display()), &e))?;
            Ok(counts)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

async fn write_demo(path: &Path, seed: u64) -> Result<(i64, i64)> {
    let fail = |e: sqlx::Error| Error::new(ErrorCode::Database, format!("cannot write the demo database {}: {e}", path.display()));
    let opts = SqliteConnectOptions::new().filename(path).create_if_missing(true).foreign_keys(true);
    let mut conn = SqliteConnection::connect_with(&opts).await.map_err(fail)?;
    let mut tx = conn.begin().await.map_err(fail)?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await.map_err(fail)?;

    let mut rng = StdRng::seed_from_u64(seed);
    let epoch = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().unwrap_or_else(Utc::now);
    let ts = |rng: &mut StdRng, max_days: i64| {
        (epoch + Duration::seconds(rng.random_range(0..max_days * 86_400))).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let mut rows = 0i64;
    let tenants = 50i64;
    for t in 0..tenants {
        let tenant_id = uuid(&mut rng);
        let name = format!("{} {}", COMPANY[usize::try_from(t).unwrap_or(0) % COMPANY.len()], SUFFIX[usize::try_from(t).unwrap_or(0) % SUFFIX.len()]);
        let slug = format!("{}-{t}", name.to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>());
        let plan = pick(&mut rng, &["free", "team", "team", "business", "enterprise"]);
        let created = ts(&mut rng, 300);
        sqlx::query("INSERT INTO tenants VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(&tenant_id)
            .bind(&name)
            .bind(&slug)
            .bind(plan)
            .bind(pick(&mut rng, &["eu-west-1", "us-east-1", "ap-northeast-1", "sa-east-1"]))
            .bind(pick(&mut rng, &["active", "active", "active", "trial", "suspended"]))
            .bind(&created)
            .bind(ts(&mut rng, 600))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        rows += 1;
        // A few large tenants and many small ones, as on a real platform.
        let user_count = if t % 10 == 0 { rng.random_range(120..200) } else { rng.random_range(8..50) };
        let mut users = Vec::with_capacity(user_count);
        for u in 0..user_count {
            let id = uuid(&mut rng);
            let first = pick(&mut rng, &FIRST);
            let last = pick(&mut rng, &LAST);
            let email = format!(
                "{}.{}{u}@{slug}.example",
                first.to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect::<String>(),
                last.to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect::<String>()
            );
            let last_login = if rng.random_bool(0.8) { Some(ts(&mut rng, 690)) } else { None };
            sqlx::query("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(&id)
                .bind(&tenant_id)
                .bind(&email)
                .bind(format!("{first} {last}"))
                .bind(if u == 0 { "owner" } else { pick(&mut rng, &["admin", "member", "member", "member", "guest"]) })
                .bind(pick(&mut rng, &["en-GB", "en-US", "de-DE", "fr-FR", "ja-JP", "pt-BR", "pl-PL"]))
                .bind(last_login)
                .bind(ts(&mut rng, 400))
                .bind(ts(&mut rng, 690))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            users.push(id);
        }
        rows += i64::try_from(user_count).unwrap_or(0);
        let project_count = user_count / 2 + 2;
        for _ in 0..project_count {
            let project_id = uuid(&mut rng);
            let owner = users[rng.random_range(0..users.len())].clone();
            let budget: Option<i64> = if rng.random_bool(0.7) { Some(rng.random_range(10_000..50_000_000)) } else { None };
            sqlx::query("INSERT INTO projects VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(&project_id)
                .bind(&tenant_id)
                .bind(&owner)
                .bind(format!("{} {}", sentence(&mut rng, 2), rng.random_range(2024..2027)))
                .bind(pick(&mut rng, &["active", "active", "archived", "draft"]))
                .bind(budget)
                .bind(ts(&mut rng, 400))
                .bind(ts(&mut rng, 690))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            rows += 1;
            for _ in 0..rng.random_range(1..10) {
                let body = (0..rng.random_range(2..12)).map(|_| sentence(&mut rng, 12)).collect::<Vec<_>>().join(".\n");
                let tags = serde_json::json!([pick(&mut rng, &WORDS), pick(&mut rng, &WORDS)]).to_string();
                sqlx::query("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                    .bind(uuid(&mut rng))
                    .bind(&tenant_id)
                    .bind(&project_id)
                    .bind(&users[rng.random_range(0..users.len())])
                    .bind(sentence(&mut rng, 4))
                    .bind(&body)
                    .bind(tags)
                    .bind(i64::try_from(body.len()).unwrap_or(0))
                    .bind(ts(&mut rng, 500))
                    .bind(ts(&mut rng, 690))
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                rows += 1;
            }
        }
        for _ in 0..user_count * 12 {
            let user = if rng.random_bool(0.95) { Some(users[rng.random_range(0..users.len())].clone()) } else { None };
            let payload = serde_json::json!({ "ip": format!("10.{}.{}.{}", rng.random_range(0..255), rng.random_range(0..255), rng.random_range(1..255)), "agent": pick(&mut rng, &["desktop", "mobile", "api"]) }).to_string();
            sqlx::query("INSERT INTO events (tenant_id, user_id, kind, payload, occurred_at) VALUES (?, ?, ?, ?, ?)")
                .bind(&tenant_id)
                .bind(user)
                .bind(pick(&mut rng, &EVENT_KINDS))
                .bind(payload)
                .bind(ts(&mut rng, 690))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            rows += 1;
        }
    }
    tx.commit().await.map_err(fail)?;
    conn.close().await.map_err(fail)?;
    Ok((tenants, rows))
}

/// Where the demo database lives inside the Safehold home.
pub fn database_path(home: &Path) -> PathBuf {
    home.join("demo").join("platform.db")
}

/// Sets up the demo platform: the database, the connection "Demo platform", the local storage
/// "Local backups" and the configuration "Daily demo backup". On first launch (`force` false) this
/// runs once; a user who later removes the demo does not get it back unless they ask (`force`).
pub async fn ensure(ctx: &Ctx, force: bool) -> Result<DemoReport> {
    if force {
        crate::context::require(ctx, crate::context::Permission::ManageAll, "demo.setup", DEMO_CONNECTION).await?;
    }
    let path = database_path(&ctx.home);
    let done = crate::catalog::setting(&ctx.pool, SETTING).await?;
    let registered: Option<String> = sqlx::query_scalar("SELECT id FROM connections WHERE name = ?")
        .bind(DEMO_CONNECTION)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read the connections", &e))?;
    let unchanged = DemoReport { created: false, database_path: path.display().to_string(), tenants: 0, rows: 0 };
    if (done.is_some() && !force) || (registered.is_some() && path.exists()) {
        return Ok(unchanged);
    }
    let (tenants, rows) = if path.exists() { (0, 0) } else { generate(&path, 125).await? };
    let backups = ctx.home.join("backups");
    crate::private::create_dir_all(&backups).map_err(|e| Error::io(format!("cannot create {}", backups.display()), &e))?;

    let ts = now();
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("start a transaction", &e))?;
    let fail = |e: sqlx::Error| Error::catalog("register the demo platform", &e);
    let connection_id = match registered {
        Some(id) => id,
        None => {
            let id = Uuid::new_v4().to_string();
            sqlx::query(
                "INSERT INTO connections (id, name, kind, sqlite_path, created_at, updated_at) VALUES (?, ?, 'sqlite', ?, ?, ?)",
            )
            .bind(&id)
            .bind(DEMO_CONNECTION)
            .bind(path.display().to_string())
            .bind(&ts)
            .bind(&ts)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
            id
        }
    };
    let has_default: i64 = sqlx::query_scalar("SELECT count(*) FROM backup_storage WHERE is_default = 1")
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
    sqlx::query(
        "INSERT INTO backup_storage (id, storage_name, storage_type, storage_config, is_default, is_active, created_at) \
         VALUES (?, ?, 'local', ?, ?, 1, ?) ON CONFLICT (storage_name) DO NOTHING",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(DEMO_STORAGE)
    .bind(serde_json::json!({ "path": backups.display().to_string() }).to_string())
    .bind(has_default == 0)
    .bind(&ts)
    .execute(&mut *tx)
    .await
    .map_err(fail)?;
    sqlx::query(
        "INSERT INTO backup_configurations (id, configuration_name, backup_type, schedule_cron, retention_days, \
         storage_location, created_by, created_at, updated_at, connection_id) \
         VALUES (?, ?, 'full', '0 2 * * *', 30, ?, ?, ?, ?, ?) ON CONFLICT (configuration_name) DO NOTHING",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(DEMO_CONFIGURATION)
    .bind(DEMO_STORAGE)
    .bind(ctx.operator_id())
    .bind(&ts)
    .bind(&ts)
    .bind(&connection_id)
    .execute(&mut *tx)
    .await
    .map_err(fail)?;
    sqlx::query("INSERT INTO app_settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(SETTING)
        .bind(&ts)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    audit(&mut *tx, &ctx.operator_id(), "demo.setup", DEMO_CONNECTION, "success", None).await?;
    tx.commit().await.map_err(fail)?;
    Ok(DemoReport { created: true, database_path: path.display().to_string(), tenants, rows })
}

const DEMO_TABLES: [&str; 5] = ["tenants", "users", "projects", "documents", "events"];

/// COPY text format for one value.
fn copy_text(v: Option<&str>) -> String {
    match v {
        None => "\\N".into(),
        Some(s) => s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r"),
    }
}

/// Copies the demo platform at `sqlite_path` into the empty PostgreSQL database at `url` (the
/// same tables, keys and rows), in one transaction: the demo on PostgreSQL, where tenant
/// restores and migrations work. Returns the rows copied.
pub async fn copy_to_postgres(sqlite_path: &Path, url: &str) -> Result<i64> {
    use futures_util::TryStreamExt;
    use sqlx::Row;
    let src_fail = |e: sqlx::Error| Error::new(ErrorCode::Database, format!("cannot read the demo database {}: {e}", sqlite_path.display()));
    let opts = SqliteConnectOptions::new().filename(sqlite_path).read_only(true);
    let mut src = SqliteConnection::connect_with(&opts).await.map_err(src_fail)?;
    let mut pg = crate::source::postgres::connect(url).await?;
    if crate::source::postgres::count_user_relations(&mut pg).await? > 0 {
        return Err(Error::validation(format!("{} is not empty: copy the demo into a new, empty database", crate::source::redact(url))));
    }
    let pg_fail = |e: sqlx::Error| Error::new(ErrorCode::Database, format!("cannot write the demo into {}: {e}", crate::source::redact(url)));
    let mut tx = pg.begin().await.map_err(pg_fail)?;
    let schema = SCHEMA.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY").replace("INTEGER", "bigint");
    sqlx::raw_sql(sqlx::AssertSqlSafe(schema)).execute(&mut *tx).await.map_err(pg_fail)?;
    let mut total = 0i64;
    for t in DEMO_TABLES {
        let cols: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{t}') ORDER BY cid")))
            .fetch_all(&mut src)
            .await
            .map_err(src_fail)?;
        let select: Vec<String> = cols.iter().map(|c| format!("CAST({c} AS TEXT)")).collect();
        let mut copy = (*tx).copy_in_raw(&format!("COPY {t} ({}) FROM STDIN", cols.join(", "))).await.map_err(pg_fail)?;
        let mut buf = String::new();
        {
            let sql = format!("SELECT {} FROM {t} ORDER BY rowid", select.join(", "));
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut src);
            while let Some(r) = rows.try_next().await.map_err(src_fail)? {
                let fields: Vec<String> = (0..cols.len()).map(|i| copy_text(r.get::<Option<String>, _>(i).as_deref())).collect();
                buf.push_str(&fields.join("\t"));
                buf.push('\n');
                total += 1;
                if buf.len() > 1 << 20 {
                    copy.send(std::mem::take(&mut buf).into_bytes()).await.map_err(pg_fail)?;
                }
            }
        }
        copy.send(buf.into_bytes()).await.map_err(pg_fail)?;
        copy.finish().await.map_err(pg_fail)?;
    }
    sqlx::raw_sql("SELECT setval(pg_get_serial_sequence('events', 'id'), (SELECT max(id) FROM events))").execute(&mut *tx).await.map_err(pg_fail)?;
    tx.commit().await.map_err(pg_fail)?;
    Ok(total)
}

/// The database the app offers to put the demo into: `safehold_demo` on the usual local server.
pub const LOCAL_DEMO_DATABASE: &str = "postgres://postgres@localhost:5432/safehold_demo";
/// The database the PostgreSQL copy of the demo goes into.
pub const DEMO_POSTGRES_DATABASE: &str = "safehold_demo";
const OFFER_SETTING: &str = "demo_postgres_offer";

/// The first launch's offer: a PostgreSQL server answers, and the demo could be copied there —
/// where tenant restores and migrations work (on the SQLite demo, restores are whole).
#[derive(Debug, Clone, Serialize, TS)]
pub struct PostgresOffer {
    /// The server, without credentials (`localhost:5432`).
    pub server: String,
    /// The database the copy would go into.
    pub database: String,
}


/// Whether to offer a PostgreSQL copy of the demo into `database_url` now: its server answers
/// within two seconds, the copy is not registered yet, and nobody said "not now".
pub async fn postgres_offer(ctx: &Ctx, database_url: &str) -> Result<Option<PostgresOffer>> {
    crate::context::require(ctx, crate::context::Permission::ViewStatus, "demo.postgres_offer", DEMO_POSTGRES_CONNECTION).await?;
    if crate::catalog::setting(&ctx.pool, OFFER_SETTING).await?.is_some() {
        return Ok(None);
    }
    let registered: i64 = sqlx::query_scalar("SELECT count(*) FROM connections WHERE name = ?")
        .bind(DEMO_POSTGRES_CONNECTION)
        .fetch_one(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read the connections", &e))?;
    if registered > 0 {
        return Ok(None);
    }
    let server_url = crate::source::postgres::database_url(database_url, "postgres")?;
    let answers = tokio::time::timeout(std::time::Duration::from_secs(2), crate::source::postgres::connect(&server_url)).await;
    let Ok(Ok(conn)) = answers else { return Ok(None) };
    let _ = conn.close().await;
    let u = url::Url::parse(database_url).map_err(|e| Error::validation(format!("invalid PostgreSQL URL: {e}")).caused_by(&e))?;
    let database = u.path().trim_start_matches('/').to_string();
    Ok(Some(PostgresOffer { server: format!("{}:{}", u.host_str().unwrap_or("localhost"), u.port().unwrap_or(5432)), database }))
}

/// "Not now": the offer is not made again (the CLI's `safehold demo --postgres` still copies it).
pub async fn dismiss_postgres_offer(ctx: &Ctx) -> Result<()> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "demo.postgres_offer.dismiss", DEMO_POSTGRES_CONNECTION).await?;
    crate::catalog::set_setting(&ctx.pool, OFFER_SETTING, "dismissed").await
}

/// What putting the demo on PostgreSQL did.
#[derive(Debug, Clone, Serialize, TS)]
pub struct PostgresDemo {
    /// The database, without credentials.
    pub database: String,
    pub rows: i64,
    /// The connection and the backup configuration registered for it.
    pub connection: String,
    pub configuration: String,
}

/// The configuration that backs up the PostgreSQL copy of the demo.
pub const DEMO_POSTGRES_CONFIGURATION: &str = "Daily demo backup (PostgreSQL)";

/// Copies the demo into `database_url` (created when the server does not have it; it must be
/// empty otherwise) and registers it: the connection "Demo platform (PostgreSQL)" and a daily
/// backup of it into the demo's storage. A failure leaves no half-filled database behind (the
/// copy is one transaction; a database this call created is dropped again) and registers nothing.
pub async fn put_on_postgres(ctx: &Ctx, database_url: &str) -> Result<PostgresDemo> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "demo.postgres", DEMO_POSTGRES_CONNECTION).await?;
    ensure(ctx, false).await?;
    let created = crate::source::postgres::create_database(database_url).await?;
    let copied = copy_to_postgres(&database_path(&ctx.home), database_url).await;
    let registered = match copied {
        Ok(rows) => register_postgres(ctx, database_url).await.map(|(c, k)| (rows, c, k)),
        Err(e) => Err(e),
    };
    match registered {
        Ok((rows, connection, configuration)) => Ok(PostgresDemo { database: crate::source::redact(database_url), rows, connection, configuration }),
        Err(e) => {
            if created {
                let _ = crate::source::postgres::drop_database(database_url).await;
            }
            Err(e)
        }
    }
}

async fn register_postgres(ctx: &Ctx, database_url: &str) -> Result<(String, String)> {
    let mut input = crate::connections::ConnectionInput::from_url(DEMO_POSTGRES_CONNECTION, database_url)?;
    input.password = None;
    let conn = crate::connections::add(ctx, input).await?;
    // Its daily backup, into the demo's storage (or the default one); failing, nothing stays registered.
    let configured = async {
        let list = crate::storage::list(ctx).await?;
        let storage = list.iter().find(|s| s.storage_name == DEMO_STORAGE && s.is_active).or_else(|| list.iter().find(|s| s.is_default && s.is_active));
        let Some(storage) = storage else {
            return Err(Error::validation("there is no storage to back the demo's copy up into: add one (Storage tab), then put the demo on PostgreSQL again"));
        };
        let input = crate::configurations::ConfigurationInput {
            configuration_name: DEMO_POSTGRES_CONFIGURATION.into(),
            storage_location: storage.storage_name.clone(),
            connection_id: conn.id.clone(),
            ..Default::default()
        };
        crate::configurations::create(ctx, input).await.map(|c| c.configuration_name)
    }
    .await;
    match configured {
        Ok(name) => Ok((conn.name, name)),
        Err(e) => {
            let _ = crate::connections::remove(ctx, &conn.id).await;
            Err(e)
        }
    }
}
