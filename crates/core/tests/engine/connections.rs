use safehold_core::connections::{self, ConnectionInput, ConnectionKind, TlsMode};
use safehold_core::ErrorCode;

use crate::support::{fixture_copy, home, pg_host_port, ScratchDb};

fn pg_input(name: &str, database: &str) -> ConnectionInput {
    let (host, port) = pg_host_port();
    ConnectionInput {
        name: name.into(),
        kind: Some(ConnectionKind::Postgres),
        host: Some(host),
        port: Some(i64::from(port)),
        database_name: Some(database.into()),
        username: Some("postgres".into()),
        tls_mode: Some(TlsMode::Prefer),
        ..Default::default()
    }
}

#[tokio::test]
async fn testing_a_postgres_connection_reports_version_size_and_tenant_tables() {
    let h = home().await;
    let db = ScratchDb::create().await;
    db.execute(
        "CREATE TABLE tenants (id uuid PRIMARY KEY, name text);
         CREATE TABLE users (id serial PRIMARY KEY, tenant_id uuid REFERENCES tenants(id), email text);
         CREATE SCHEMA billing;
         CREATE TABLE billing.invoices (id bigint PRIMARY KEY, tenant_id uuid, total numeric);
         CREATE TABLE settings (key text PRIMARY KEY, value text);",
    )
    .await;
    let c = connections::add(&h.ctx, pg_input("scratch", &db.name)).await.expect("add");
    assert!(!c.has_password);
    let report = connections::test(&h.ctx, &c.id).await.expect("test");
    assert!(report.server_version.starts_with("PostgreSQL "), "{}", report.server_version);
    assert!(report.size_bytes > 0);
    assert_eq!(report.table_count, 4);
    let tenant: Vec<String> = report
        .tenant_tables
        .iter()
        .map(|t| format!("{}.{}", t.schema.as_deref().unwrap_or(""), t.name))
        .collect();
    assert_eq!(tenant, ["billing.invoices", "public.users"], "tables with a tenant_id column, not tenants or settings");
    assert_eq!(report.address, format!("postgres://postgres@{}:{}/{}", pg_host_port().0, pg_host_port().1, db.name));
}

#[tokio::test]
async fn a_custom_tenant_column_is_used_to_find_tenant_tables() {
    let db = ScratchDb::create().await;
    db.execute("CREATE TABLE accounts (id int PRIMARY KEY, org_id int); CREATE TABLE users (id int, tenant_id int);").await;
    let input = ConnectionInput { tenant_column: Some("org_id".into()), ..pg_input("org", &db.name) };
    let report = connections::probe(&input).await.expect("probe");
    let names: Vec<&str> = report.tenant_tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["accounts"]);
}

#[tokio::test]
async fn testing_a_sqlite_file_reports_its_tables() {
    let dir = tempfile::tempdir().expect("tmp");
    let chinook = fixture_copy("chinook/Chinook_Sqlite.sqlite", &dir);
    let input = ConnectionInput {
        name: "Chinook".into(),
        kind: Some(ConnectionKind::Sqlite),
        sqlite_path: Some(chinook.display().to_string()),
        ..Default::default()
    };
    let report = connections::probe(&input).await.expect("probe chinook");
    assert!(report.server_version.starts_with("SQLite 3."));
    assert_eq!(report.table_count, 11, "Chinook has 11 tables");
    assert!(report.tenant_tables.is_empty(), "Chinook is not multi-tenant");
    let with_column = ConnectionInput { tenant_column: Some("CustomerId".into()), ..input };
    let names: Vec<String> = connections::probe(&with_column).await.expect("probe").tenant_tables.into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["Customer", "Invoice"]);
}

#[tokio::test]
async fn an_unreachable_server_is_reported_with_its_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let input = ConnectionInput { port: Some(i64::from(port)), host: Some("127.0.0.1".into()), ..pg_input("nothing", "db") };
    let err = connections::probe(&input).await.expect_err("nobody listens");
    assert_eq!(err.code, ErrorCode::Unreachable);
    assert!(err.message.contains(&format!("127.0.0.1:{port}/db")), "names the address: {}", err.message);
    assert!(err.message.contains("check the host and port"), "says what to do: {}", err.message);
}

#[tokio::test]
async fn a_missing_database_is_reported_by_name() {
    let err = connections::probe(&pg_input("x", "safehold_no_such_db")).await.expect_err("no db");
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(err.message.contains("database \"safehold_no_such_db\" does not exist"), "{}", err.message);
}

#[tokio::test]
async fn a_missing_sqlite_file_or_a_file_that_is_not_sqlite_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = ConnectionInput {
        name: "m".into(),
        kind: Some(ConnectionKind::Sqlite),
        sqlite_path: Some(dir.path().join("nope.db").display().to_string()),
        ..Default::default()
    };
    assert_eq!(connections::probe(&missing).await.expect_err("missing").code, ErrorCode::NotFound);
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a database, just some text that is long enough to have a header").expect("write");
    let not_sqlite = ConnectionInput { sqlite_path: Some(text.display().to_string()), ..missing };
    let err = connections::probe(&not_sqlite).await.expect_err("not sqlite");
    assert!(err.message.contains("is not a readable SQLite database"), "{}", err.message);
}

/// Needs a server that checks passwords: scripts/test.sh starts one and sets SAFEHOLD_TEST_PG_AUTH.
#[tokio::test]
async fn a_wrong_password_is_reported_as_such() {
    let Ok(url) = std::env::var("SAFEHOLD_TEST_PG_AUTH") else {
        eprintln!("SAFEHOLD_TEST_PG_AUTH is not set (scripts/test.sh sets it): skipped");
        return;
    };
    let mut good = ConnectionInput::from_url("auth", &url).expect("url");
    let report = connections::probe(&good).await.expect("the right password connects");
    assert!(report.server_version.starts_with("PostgreSQL"));
    good.password = Some("wrong-password".into());
    let err = connections::probe(&good).await.expect_err("wrong password");
    assert_eq!(err.code, ErrorCode::AuthFailed);
    assert!(err.message.contains("password authentication failed"), "{}", err.message);
    assert!(!err.message.contains("wrong-password"), "the password never appears in a message");
    good.password = None;
    let err = connections::probe(&good).await.expect_err("no password");
    assert_eq!(err.code, ErrorCode::AuthFailed, "{}", err.message);
}

#[tokio::test]
async fn invalid_connection_input_names_each_field_and_writes_nothing() {
    let h = home().await;
    let bad = ConnectionInput { name: "".into(), kind: Some(ConnectionKind::Postgres), port: Some(70000), ..Default::default() };
    let err = connections::add(&h.ctx, bad).await.expect_err("invalid");
    let fields: Vec<&str> = err.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["name", "host", "port", "database_name", "username"]);
    let relative = ConnectionInput { name: "rel".into(), kind: Some(ConnectionKind::Sqlite), sqlite_path: Some("x.db".into()), ..Default::default() };
    assert_eq!(connections::add(&h.ctx, relative).await.expect_err("relative").fields[0].field, "sqlite_path");
    assert!(connections::list(&h.ctx).await.expect("list").is_empty());

    connections::add(&h.ctx, pg_input("dup", "postgres")).await.expect("first");
    let dup = connections::add(&h.ctx, pg_input("dup", "postgres")).await.expect_err("duplicate");
    assert!(dup.message.contains("already exists"), "{}", dup.message);
    assert_eq!(connections::list(&h.ctx).await.expect("list").len(), 1);
}

#[tokio::test]
async fn a_connection_used_by_a_configuration_cannot_be_removed() {
    let h = home().await;
    safehold_core::demo::ensure(&h.ctx, false).await.expect("demo");
    let demo = connections::find(&h.ctx, safehold_core::demo::DEMO_CONNECTION).await.expect("find by name");
    let err = connections::remove(&h.ctx, &demo.id).await.expect_err("in use");
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(err.message.contains("Daily demo backup"), "{}", err.message);
}

#[test]
fn database_urls_are_read_into_connections() {
    let c = ConnectionInput::from_url("p", "postgresql://app:s%40cret@db.example:6543/platform?sslmode=require").expect("pg");
    assert_eq!(c.kind, Some(ConnectionKind::Postgres));
    assert_eq!(c.host.as_deref(), Some("db.example"));
    assert_eq!(c.port, Some(6543));
    assert_eq!(c.database_name.as_deref(), Some("platform"));
    assert_eq!(c.username.as_deref(), Some("app"));
    assert_eq!(c.password.as_deref(), Some("s@cret"));
    assert_eq!(c.tls_mode, Some(TlsMode::Require));
    let s = ConnectionInput::from_url("s", "sqlite:///var/lib/app.db").expect("sqlite");
    assert_eq!(s.sqlite_path.as_deref(), Some("/var/lib/app.db"));
    let err = ConnectionInput::from_url("x", "mysql://a@b/c").expect_err("mysql");
    assert!(err.message.contains("postgres://"), "{}", err.message);
}

/// An engine error from PostgreSQL keeps the driver's error as its cause (for logs and callers
/// walking `source()`), while its message says what to do.
#[tokio::test]
async fn a_postgres_error_keeps_the_drivers_error_as_its_cause() {
    let url = format!("{}/safehold_no_such_database_{}", crate::support::pg_base(), std::process::id());
    let e = safehold_core::source::postgres::fingerprint(&url).await.expect_err("no such database");
    assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");
    assert!(e.message.contains("does not exist; check the database name"), "{}", e.message);
    let cause = std::error::Error::source(&e).expect("a cause").to_string();
    assert!(cause.contains("does not exist") && cause != e.message, "the driver's own words: {cause}");
}
