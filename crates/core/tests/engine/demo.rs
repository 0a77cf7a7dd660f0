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
