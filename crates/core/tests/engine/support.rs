//! Shared helpers: a fresh Safehold home per test and scratch PostgreSQL databases.

use std::path::PathBuf;

use safehold_core::Ctx;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

/// The PostgreSQL server the tests use: `SAFEHOLD_TEST_PG` (set by scripts/test.sh when it had to
/// start a private cluster) or the project's machine's server.
pub fn pg_base() -> String {
    std::env::var("SAFEHOLD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn pg_host_port() -> (String, u16) {
    let url = url::Url::parse(&pg_base()).expect("SAFEHOLD_TEST_PG is a URL");
    (url.host_str().unwrap_or("127.0.0.1").to_string(), url.port().unwrap_or(5432))
}

/// A temporary Safehold home with an opened catalog.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub ctx: Ctx,
}

pub async fn home() -> Home {
    let dir = tempfile::tempdir().expect("temp dir");
    let ctx = Ctx::open(dir.path()).await.expect("open the catalog");
    Home { dir, ctx }
}

/// A scratch database, dropped when the value goes out of scope.
pub struct ScratchDb {
    pub name: String,
    /// The server it is on.
    pub base: String,
}

impl ScratchDb {
    pub async fn create() -> ScratchDb {
        Self::create_on(&pg_base()).await
    }

    /// On another server (e.g. the cluster with logical decoding).
    pub async fn create_on(base: &str) -> ScratchDb {
        let name = format!("safehold_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&format!("{base}/postgres")).await.expect("connect to the test PostgreSQL");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.expect("create scratch db");
        ScratchDb { name, base: base.to_string() }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }

    pub async fn execute(&self, sql: &str) {
        let mut conn = PgConnection::connect(&self.url()).await.expect("connect to the scratch db");
        sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut conn).await.expect("run SQL in the scratch db");
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let base = self.base.clone();
        // Dropped inside a multi-threaded runtime, the worker hands its other tasks on while it
        // waits: one of them may be what the DROP waits for (a COPY that must absorb the
        // server's barrier).
        let in_runtime = tokio::runtime::Handle::try_current().is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let drop_it = move || std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&format!("{base}/postgres")).await {
                    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut admin).await;
                }
            });
        })
        .join();
        let _ = if in_runtime { tokio::task::block_in_place(drop_it) } else { drop_it() };
    }
}

/// A copy of a fixture file in a temporary directory (fixtures are never written).
pub fn fixture_copy(relative: &str, dir: &tempfile::TempDir) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(relative);
    let dst = dir.path().join(src.file_name().expect("file name"));
    std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy fixture {}: {e}", src.display()));
    dst
}
