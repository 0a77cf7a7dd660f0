use safehold_core::{configurations, connections, demo, storage};

use crate::support::home;

#[tokio::test]
async fn the_demo_platform_is_a_working_multi_tenant_database_with_a_configuration() {
    let h = home().await;
    let report = demo::ensure(&h.ctx, false).await.expect("demo");
    assert!(report.created);
    assert_eq!(report.tenants, 50, "about 50 tenants");
    assert!(report.rows >= 30_000, "tens of thousands of rows, got {}", report.rows);

    let conns = connections::list(&h.ctx).await.expect("connections");
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].name, demo::DEMO_CONNECTION);
    let tested = connections::test(&h.ctx, &conns[0].id).await.expect("the demo connection works");
    let tenant_tables: Vec<&str> = tested.tenant_tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tenant_tables, ["documents", "events", "projects", "users"]);
    let total: i64 = tested.tenant_tables.iter().filter_map(|t| t.rows).sum::<i64>() + 50;
    assert_eq!(total, report.rows, "the rows counted by Test connection are the rows written");

    let stores = storage::list(&h.ctx).await.expect("storage");
    assert_eq!(stores.len(), 1);
    assert!(stores[0].is_default, "the demo's local storage is the default");
    let configs = configurations::list(&h.ctx).await.expect("configs");
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].configuration_name, demo::DEMO_CONFIGURATION);
    assert_eq!(configs[0].connection_id.as_deref(), Some(conns[0].id.as_str()));
    // Its tenants, for the Restore form's picker (a SQLite connection too).
    let tenants = safehold_core::migrate::records::tenants(&h.ctx, &conns[0].id).await.expect("tenants");
    assert_eq!(tenants.len(), 50);
    assert!(tenants.iter().all(|t| t.name.as_deref().is_some_and(|n| !n.is_empty())), "with their names");
}

#[tokio::test]
async fn the_demo_is_set_up_once_and_comes_back_only_when_asked() {
    let h = home().await;
    demo::ensure(&h.ctx, false).await.expect("first launch");
    let second = demo::ensure(&h.ctx, false).await.expect("second launch");
    assert!(!second.created, "a second start creates nothing");
    assert_eq!(connections::list(&h.ctx).await.expect("list").len(), 1);

    // The user removes the demo: a restart does not bring it back, `safehold demo` does.
    for c in configurations::list(&h.ctx).await.expect("configs") {
        configurations::delete(&h.ctx, &c.id).await.expect("delete config");
    }
    let id = connections::list(&h.ctx).await.expect("list")[0].id.clone();
    connections::remove(&h.ctx, &id).await.expect("remove demo");
    assert!(!demo::ensure(&h.ctx, false).await.expect("restart").created);
    assert!(connections::list(&h.ctx).await.expect("list").is_empty(), "removed demo stays removed");
    demo::ensure(&h.ctx, true).await.expect("asked for");
    assert_eq!(connections::list(&h.ctx).await.expect("list").len(), 1, "asked-for demo is back");
    assert_eq!(configurations::list(&h.ctx).await.expect("configs").len(), 1);
}

#[tokio::test]
async fn the_demo_data_is_the_same_for_the_same_seed() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = demo::generate(&dir.path().join("a.db"), 7).await.expect("a");
    let b = demo::generate(&dir.path().join("b.db"), 7).await.expect("b");
    assert_eq!(a, b, "same seed, same counts");
    let bytes_a = std::fs::read(dir.path().join("a.db")).expect("read");
    let bytes_b = std::fs::read(dir.path().join("b.db")).expect("read");
    assert_eq!(bytes_a, bytes_b, "same seed, same database file");
    let err = demo::generate(&dir.path().join("a.db"), 7).await.expect_err("exists");
    assert!(err.message.contains("already exists"));
}

/// The first launch offers the demo on a PostgreSQL server that answers; taken, the copy has the
/// demo's rows, a connection and a daily backup, and a tenant restore works on it. "Not now" and
/// a server that does not answer make no offer; a database that is not empty is refused and
/// nothing is registered.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_is_offered_on_postgresql_and_a_tenant_restore_works_on_the_copy() {
    use crate::support::{pg_base, ScratchDb};
    use safehold_core::restore::{self, RestoreRequest, RestoreType};
    use safehold_core::source::{no_progress, CancelToken, SourceSpec};
    let h = home().await;
    let demo = demo::ensure(&h.ctx, false).await.expect("demo");
    let server = format!("{}/{}", pg_base(), demo::DEMO_POSTGRES_DATABASE);
    let offer = demo::postgres_offer(&h.ctx, &server).await.expect("offer").expect("a server answers: the demo is offered");
    assert_eq!(offer.database, demo::DEMO_POSTGRES_DATABASE);
    assert!(!offer.server.contains('@'), "no user or password in what is shown: {}", offer.server);
    assert!(demo::postgres_offer(&h.ctx, "postgres://postgres@127.0.0.1:1/safehold_demo").await.expect("offer").is_none(), "no server, no offer");

    // A database that is not empty: refused, nothing registered, the database kept.
    let full = ScratchDb::create().await;
    full.execute("CREATE TABLE mine (id int)").await;
    let err = demo::put_on_postgres(&h.ctx, &full.url()).await.expect_err("not empty");
    assert!(err.message.contains("is not empty"), "{}", err.message);
    assert_eq!(connections::list(&h.ctx).await.expect("list").len(), 1);

    let db = ScratchDb { name: format!("safehold_test_{}", uuid::Uuid::new_v4().simple()), base: crate::support::pg_base() };
    let put = demo::put_on_postgres(&h.ctx, &db.url()).await.expect("the demo on PostgreSQL");
    assert_eq!(put.rows, demo.rows);
    assert_eq!(put.connection, demo::DEMO_POSTGRES_CONNECTION);
    assert_eq!(put.configuration, demo::DEMO_POSTGRES_CONFIGURATION);
    let conns = connections::list(&h.ctx).await.expect("list");
    let pg = conns.iter().find(|c| c.name == demo::DEMO_POSTGRES_CONNECTION).expect("registered");
    let configs = configurations::list(&h.ctx).await.expect("configs");
    assert!(configs.iter().any(|c| c.configuration_name == demo::DEMO_POSTGRES_CONFIGURATION && c.connection_id.as_deref() == Some(pg.id.as_str()) && c.is_active));
    assert!(demo::postgres_offer(&h.ctx, &server).await.expect("offer").is_none(), "taken: not offered again");

    // A tenant restore in place on the copy (refused on the SQLite demo): one tenant's documents
    // deleted, then put back from a backup, the other tenants untouched.
    let repo = crate::backup::repo_with_password("pw");
    repo.backup(SourceSpec::Postgres { url: db.url() }).await;
    let tenant: String = sqlx::query_scalar("SELECT tenant_id FROM documents GROUP BY tenant_id ORDER BY count(*) DESC LIMIT 1")
        .fetch_one(&mut <sqlx::PgConnection as sqlx::Connection>::connect(&db.url()).await.expect("connect"))
        .await
        .expect("a tenant with documents");
    let count = |sql: String| {
        let url = db.url();
        async move { sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(&mut <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.expect("connect")).await.expect("count") }
    };
    let (mine, others) = (count(format!("SELECT count(*) FROM documents WHERE tenant_id = '{tenant}'")).await, count(format!("SELECT count(*) FROM documents WHERE tenant_id <> '{tenant}'")).await);
    db.execute(&format!("DELETE FROM documents WHERE tenant_id = '{tenant}'")).await;
    let mut req = RestoreRequest::new(repo.path(), db.url());
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(tenant.clone());
    req.safety_backup = false;
    let opened = restore::open(&req, &repo.keys).await.expect("open");
    restore::execute(&req, opened, &repo.keys, &CancelToken::new(), &no_progress()).await.expect("tenant restore on the PostgreSQL demo");
    assert_eq!(count(format!("SELECT count(*) FROM documents WHERE tenant_id = '{tenant}'")).await, mine);
    assert_eq!(count(format!("SELECT count(*) FROM documents WHERE tenant_id <> '{tenant}'")).await, others);

    // "Not now" in another home: not offered again.
    let other = home().await;
    demo::ensure(&other.ctx, false).await.expect("demo");
    // A step failing after the copy (its configuration's name taken) leaves nothing: no
    // connection registered, the database it made dropped.
    let sqlite = connections::list(&other.ctx).await.expect("list").into_iter().next().expect("the demo's connection");
    let taken = configurations::ConfigurationInput { configuration_name: demo::DEMO_POSTGRES_CONFIGURATION.into(), storage_location: demo::DEMO_STORAGE.into(), connection_id: sqlite.id, ..Default::default() };
    configurations::create(&other.ctx, taken).await.expect("a configuration of that name");
    let failed = ScratchDb { name: format!("safehold_test_{}", uuid::Uuid::new_v4().simple()), base: crate::support::pg_base() };
    demo::put_on_postgres(&other.ctx, &failed.url()).await.expect_err("the configuration's name is taken");
    assert!(!connections::list(&other.ctx).await.expect("list").iter().any(|c| c.name == demo::DEMO_POSTGRES_CONNECTION), "no connection left registered");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&failed.name)
        .fetch_one(&mut <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{}/postgres", pg_base())).await.expect("connect"))
        .await
        .expect("look");
    assert!(!exists, "the database it made is dropped");
    demo::dismiss_postgres_offer(&other.ctx).await.expect("not now");
    assert!(demo::postgres_offer(&other.ctx, &server).await.expect("offer").is_none());
}
