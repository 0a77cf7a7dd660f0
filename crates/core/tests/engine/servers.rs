//! Server backups (issue 25 §1): every database of a server and its globals — roles with their
//! attributes, comments, password hashes, settings and memberships; databases with their owner,
//! encoding, settings, comment and grants; large objects; the owners and grants of the objects
//! inside (restored with --owners --privileges) — backed up from PostgreSQL 16 and put
//! onto a newer server (18) whole, and onto an older one (14): there first refused, naming what
//! 14 cannot hold and having written nothing, then restored without it, one database and the
//! roles it needs. Each compared with the source by a catalog description written here.

use std::collections::BTreeMap;

use safehold_core::backup::BackupRequest;
use safehold_core::servers::{self, RolesMode, ServerBackupRequest, ServerRestoreRequest};
use safehold_core::source::{CancelToken, SourceSpec};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::backup::repo_with_password;
use safehold_core::jobs::no_progress;
use crate::versions::{describe, servers};

/// Runs each of `sql`'s statements (none has a `;` of its own) on its own: CREATE DATABASE
/// cannot run in the transaction a multi-statement string is.
async fn run(url: &str, sql: &str) {
    let mut c = PgConnection::connect(url).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
    for st in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::raw_sql(AssertSqlSafe(st.to_string())).execute(&mut c).await.unwrap_or_else(|e| panic!("{st}: {e}"));
    }
}

async fn lines(url: &str, sql: &str) -> Vec<String> {
    let mut c = PgConnection::connect(url).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let mut v: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_all(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    v.sort();
    v
}

/// The server's globals that concern the roles and databases named `{tag}_…`, as lines, and each
/// such database described (schema, rows, large objects).
async fn describe_server(server: &str, tag: &str, databases: &[String]) -> BTreeMap<String, Vec<String>> {
    let admin = format!("{server}/postgres");
    let like = format!("{tag}\\_%");
    let mut out = BTreeMap::new();
    out.insert("roles".into(), lines(&admin, &format!(
        "SELECT format('%s super=%s inherit=%s createrole=%s createdb=%s login=%s replication=%s bypassrls=%s connlimit=%s until=%s pw=%s comment=%s', \
                rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil AT TIME ZONE 'UTC', md5(rolpassword), shobj_description(oid, 'pg_authid')) \
         FROM pg_authid WHERE rolname LIKE '{like}'")).await);
    out.insert("memberships".into(), lines(&admin, &format!(
        "SELECT format('%s in %s admin=%s', u.rolname, r.rolname, m.admin_option) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname LIKE '{like}'")).await);
    out.insert("settings".into(), lines(&admin, &format!(
        "SELECT format('%s %s %s', coalesce(r.rolname, '-'), coalesce(d.datname, '-'), s.setconfig) FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase \
         WHERE r.rolname LIKE '{like}' OR d.datname LIKE '{like}'")).await);
    out.insert("databases".into(), lines(&admin, &format!(
        "SELECT format('%s owner=%s encoding=%s collate=%s ctype=%s connlimit=%s comment=%s acl=%s', d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, d.datconnlimit, \
                shobj_description(d.oid, 'pg_database'), (SELECT string_agg(format('%s:%s:%s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type, a.is_grantable), ',' ORDER BY 1) FROM aclexplode(d.datacl) a)) \
         FROM pg_database d WHERE d.datname = ANY(ARRAY[{}]::text[])", databases.iter().map(|d| format!("'{d}'")).collect::<Vec<_>>().join(", "))).await);
    for d in databases {
        let url = format!("{server}/{d}");
        for (kind, v) in describe(&url).await {
            out.insert(format!("{d} {kind}"), v);
        }
        let user = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND n.nspname NOT LIKE 'pg\\_%'";
        out.insert(format!("{d} access"), lines(&url, &format!(
            "SELECT format('schema %s %s %s', n.nspname, pg_get_userbyid(n.nspowner), n.nspacl) FROM pg_namespace n WHERE {user} \
             UNION ALL SELECT format('relation %s.%s %s %s', n.nspname, c.relname, pg_get_userbyid(c.relowner), c.relacl) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user} AND c.relkind IN ('r', 'p', 'v', 'm', 'S') \
             UNION ALL SELECT format('column %s.%s %s', c.relname, a.attname, a.attacl) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user} AND a.attacl IS NOT NULL \
             UNION ALL SELECT format('function %s %s %s', p.oid::regprocedure, pg_get_userbyid(p.proowner), p.proacl) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {user} \
             UNION ALL SELECT format('large object %s %s %s', oid, pg_get_userbyid(lomowner), lomacl) FROM pg_largeobject_metadata \
             UNION ALL SELECT format('default privileges %s %s %s %s', pg_get_userbyid(d.defaclrole), coalesce(n.nspname, '-'), d.defaclobjtype, d.defaclacl) FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace")).await);
    }
    out
}

/// Drops the databases and roles whose names start with `prefix`, and what the test put into
/// `postgres`.
async fn drop_all(server: &str, prefix: &str) {
    let admin = format!("{server}/postgres");
    let mut c = PgConnection::connect(&admin).await.expect("connect");
    let dbs: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT datname::text FROM pg_database WHERE datname LIKE '{prefix}%'"))).fetch_all(&mut c).await.expect("databases");
    for d in dbs {
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE \"{d}\" WITH (FORCE)"))).execute(&mut c).await.expect("drop database");
    }
    let roles: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT rolname::text FROM pg_roles WHERE rolname LIKE '{prefix}%' ORDER BY oid DESC"))).fetch_all(&mut c).await.expect("roles");
    for r in roles {
        sqlx::query(AssertSqlSafe(format!("DROP ROLE \"{r}\""))).execute(&mut c).await.expect("drop role");
    }
    sqlx::raw_sql("DROP TABLE IF EXISTS public.server_notes").execute(&mut c).await.expect("drop table");
}

fn request(from: &std::path::Path, target: &str) -> ServerRestoreRequest {
    ServerRestoreRequest { from: from.to_path_buf(), set_id: None, target: format!("{target}/"), databases: Vec::new(), roles: RolesMode::All, skip_unsupported: false, owners: true, privileges: true, jobs: 2 }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_backup_of_16_is_restored_whole_onto_18_and_onto_14_without_what_14_cannot_hold() {
    let Some(servers) = servers() else { return };
    let find = |v: u32| servers.iter().find(|(w, _)| *w == v).map(|(_, u)| u.clone());
    let (Some(src), Some(up), Some(down)) = (find(16), find(18), find(14)) else {
        eprintln!("skipped: the server test needs PostgreSQL 14, 16 and 18 in the matrix");
        return;
    };
    let tag = format!("srv{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    for s in [&src, &up, &down] {
        drop_all(s, "srv").await;
    }
    let (a, b, c) = (format!("{tag}_a"), format!("{tag}_b"), format!("{tag}_c"));
    run(&format!("{src}/postgres"), &format!(
        "CREATE ROLE {tag}_owner LOGIN CONNECTION LIMIT 5 VALID UNTIL '2030-01-01 00:00:00+00' PASSWORD 'owner-secret'; COMMENT ON ROLE {tag}_owner IS 'owns the application''s databases'; \
         CREATE ROLE {tag}_readers NOLOGIN NOINHERIT; \
         CREATE ROLE {tag}_app LOGIN PASSWORD 'app-secret'; CREATE ROLE {tag}_auditor NOLOGIN; \
         ALTER ROLE {tag}_app SET search_path = app, \"my schema\", public; ALTER ROLE {tag}_app SET work_mem = '8MB'; \
         GRANT {tag}_readers TO {tag}_app WITH ADMIN OPTION; GRANT pg_read_all_data TO {tag}_readers; \
         GRANT {tag}_readers TO {tag}_owner WITH SET FALSE; \
         CREATE DATABASE {a} OWNER {tag}_owner; COMMENT ON DATABASE {a} IS 'the first tenant database'; \
         ALTER DATABASE {a} SET statement_timeout = '5s'; REVOKE ALL ON DATABASE {a} FROM PUBLIC; GRANT CONNECT ON DATABASE {a} TO {tag}_app; GRANT CREATE ON DATABASE {a} TO {tag}_readers WITH GRANT OPTION; \
         ALTER ROLE {tag}_app IN DATABASE {a} SET work_mem = '16MB'; \
         CREATE DATABASE {b} TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' CONNECTION LIMIT 20; \
         CREATE DATABASE {c}; \
         CREATE TABLE public.server_notes (id int PRIMARY KEY, note text); INSERT INTO public.server_notes VALUES (1, 'in postgres');"
    )).await;
    run(&format!("{src}/{a}"), "CREATE SCHEMA app; CREATE TABLE app.tenants (id int PRIMARY KEY, name text NOT NULL, logo oid); \
         INSERT INTO app.tenants VALUES (1, 'acme', lo_from_bytea(0, decode(repeat('89504e47', 5000), 'hex'))), (2, 'globex', lo_from_bytea(0, ''::bytea)); \
         CREATE TABLE app.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id int NOT NULL REFERENCES app.tenants, total numeric(10,2)); \
         INSERT INTO app.orders (tenant_id, total) SELECT 1 + i % 2, i * 1.5 FROM generate_series(1, 500) i;").await;
    // Owners and grants inside the database: restored when asked (--owners --privileges).
    run(&format!("{src}/{a}"), &format!(
        "ALTER SCHEMA app OWNER TO {tag}_owner; ALTER TABLE app.tenants OWNER TO {tag}_owner; ALTER TABLE app.orders OWNER TO {tag}_owner; \
         GRANT USAGE ON SCHEMA app TO {tag}_readers; GRANT SELECT ON app.orders TO {tag}_readers; GRANT SELECT (id, name) ON app.tenants TO {tag}_app; GRANT SELECT ON app.tenants TO {tag}_auditor; \
         CREATE FUNCTION app.total(int) RETURNS numeric LANGUAGE sql AS 'SELECT sum(total) FROM app.orders WHERE tenant_id = $1'; \
         ALTER FUNCTION app.total(int) OWNER TO {tag}_owner; REVOKE EXECUTE ON FUNCTION app.total(int) FROM PUBLIC; GRANT EXECUTE ON FUNCTION app.total(int) TO {tag}_app; \
         SELECT lo_from_bytea(4242001, 'owned by the owner'); ALTER LARGE OBJECT 4242001 OWNER TO {tag}_owner; GRANT SELECT ON LARGE OBJECT 4242001 TO {tag}_readers; \
         ALTER DEFAULT PRIVILEGES FOR ROLE {tag}_owner IN SCHEMA app GRANT SELECT ON TABLES TO {tag}_readers; \
         ALTER DEFAULT PRIVILEGES FOR ROLE {tag}_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC"
    )).await;
    run(&format!("{src}/{b}"), "CREATE TABLE names (id int PRIMARY KEY, name text); INSERT INTO names VALUES (1, 'Müller'), (2, 'Ærø');").await;
    run(&format!("{src}/{c}"), "CREATE TABLE empty_one (id int);").await;

    // The server backup: every database but the matrix's scratch ones, with the password hashes.
    let repo = repo_with_password("servers");
    let (r, mk) = repo.keys.open_repository_for_backup(&repo.path()).await.expect("open repository");
    let mut each = BackupRequest::new(SourceSpec::Postgres { url: format!("{src}/postgres") });
    each.jobs = 2;
    let req = ServerBackupRequest { url: format!("{src}/"), exclude: vec!["safehold_*".into(), "srv*".into()], with_passwords: true, each };
    let err = servers::backup(&r, Some(&mk), &req, &CancelToken::new(), &no_progress()).await.expect("a backup");
    assert!(err.databases.iter().any(|d| d.database == "postgres"), "{:?}", err.databases);
    assert!(!err.databases.iter().any(|d| d.database.starts_with("srv")), "excluded: {:?}", err.databases);
    let req = ServerBackupRequest { exclude: vec!["safehold_*".into(), "template*".into()], ..req };
    let out = servers::backup(&r, Some(&mk), &req, &CancelToken::new(), &no_progress()).await.expect("server backup");
    let mut names: Vec<&str> = out.databases.iter().map(|d| d.database.as_str()).filter(|d| d.starts_with(&tag)).collect();
    names.sort();
    assert_eq!(names, [a.as_str(), b.as_str(), c.as_str()]);
    assert!(out.roles >= 3 && out.memberships >= 3, "{out:?}");
    // Each database is an ordinary backup of the repository; the set is apart, under servers/.
    assert_eq!(servers::sets(&r).expect("sets").len(), 2);
    assert!(!std::fs::read(&out.archive).expect("set").windows(12).any(|w| w == b"owner-secret"));

    let mine: Vec<String> = vec![a.clone(), b.clone(), c.clone()];
    let expected = describe_server(&src, &tag, &mine).await;
    assert_eq!(expected[&format!("{a} large objects")].len(), 3);
    assert!(expected[&format!("{a} access")].iter().any(|l| l.contains(&format!("{tag}_readers=r/{tag}_owner"))), "{:?}", expected[&format!("{a} access")]);
    assert_eq!(expected[&format!("{a} access")].iter().filter(|l| l.starts_with("default privileges")).count(), 2, "{:?}", expected[&format!("{a} access")]);
    assert!(expected["memberships"].iter().any(|l| l.contains("pg_read_all_data")), "{:?}", expected["memberships"]);

    // Onto 18: the plan first (nothing written), then everything.
    let mut up_req = request(&repo.path(), &up);
    up_req.databases = mine.iter().cloned().chain(["postgres".to_string()]).collect();
    let plan = servers::plan(&up_req, &repo.keys).await.expect("plan");
    assert!(plan.unsupported.is_empty(), "{:?}", plan.unsupported);
    assert!(plan.roles_created.contains(&format!("{tag}_app")) && plan.roles_existing.contains(&"postgres".to_string()), "{plan:?}");
    assert_eq!(plan.databases.iter().find(|d| d.database == "postgres").map(|d| d.action()), Some("exists, empty: restored into"));
    assert!(lines(&format!("{up}/postgres"), &format!("SELECT rolname::text FROM pg_roles WHERE rolname LIKE '{tag}%'")).await.is_empty(), "a plan writes nothing");
    let done = servers::restore(&up_req, &repo.keys, &CancelToken::new(), &no_progress()).await.expect("restore onto 18");
    assert_eq!(done.databases.len(), 4);
    let got = describe_server(&up, &tag, &mine).await;
    for (k, v) in &expected {
        assert_eq!(&got[k], v, "16 → 18: {k} differ");
    }
    assert_eq!(lines(&format!("{up}/postgres"), "SELECT note FROM public.server_notes").await, ["in postgres"]);
    // Again onto the same server: the databases are there now, with tables: refused by name.
    let again = servers::restore(&up_req, &repo.keys, &CancelToken::new(), &no_progress()).await.expect_err("refused");
    assert!(again.message.contains(&a) && again.message.contains("nothing was written"), "{}", again.message);

    // Onto 14: refused first, naming what 14 cannot hold; nothing written.
    let mut down_req = request(&repo.path(), &down);
    down_req.databases = mine.clone();
    let refused = servers::restore(&down_req, &repo.keys, &CancelToken::new(), &no_progress()).await.expect_err("refused on 14");
    assert!(refused.message.contains(&format!("membership of {tag}_owner in {tag}_readers")) && refused.message.contains("PostgreSQL 16") && refused.message.contains("--skip-unsupported"), "{}", refused.message);
    assert!(lines(&format!("{down}/postgres"), &format!("SELECT rolname::text FROM pg_roles WHERE rolname LIKE '{tag}%' UNION ALL SELECT datname::text FROM pg_database WHERE datname LIKE '{tag}%'")).await.is_empty(), "nothing written on 14");
    // Without it, one database and the roles it needs.
    down_req.skip_unsupported = true;
    down_req.roles = RolesMode::Needed;
    down_req.databases = vec![a.clone()];
    let done = servers::restore(&down_req, &repo.keys, &CancelToken::new(), &no_progress()).await.expect("restore onto 14");
    assert_eq!(done.databases, std::slice::from_ref(&a));
    let mut needed = done.roles_created.clone();
    needed.sort();
    // The auditor only has a grant on a table inside: needed because grants are restored.
    assert_eq!(needed, [format!("{tag}_app"), format!("{tag}_auditor"), format!("{tag}_owner"), format!("{tag}_readers")]);
    let got = describe_server(&down, &tag, std::slice::from_ref(&a)).await;
    let only_a = describe_server(&src, &tag, std::slice::from_ref(&a)).await;
    for (k, v) in &only_a {
        if k == "memberships" {
            // What 14 could not hold was left out, and only that.
            let kept: Vec<String> = v.iter().filter(|l| !l.starts_with(&format!("{tag}_owner in {tag}_readers"))).cloned().collect();
            assert_eq!(&got[k], &kept, "16 → 14: memberships");
        } else {
            assert_eq!(&got[k], v, "16 → 14: {k} differ");
        }
    }
    for s in [&src, &up, &down] {
        drop_all(s, &tag).await;
    }
}

/// A configuration whose source is a whole server (issue 25 §1), run from the catalog like any
/// other: each run backs up the databases the server has then (one made after the first run is
/// in the second; excluded ones are not), its record names the set and keeps the databases'
/// archives, the set opens and plans a restore; the Restore form sends such a backup to the
/// server restore; retention deletes an expired set with its databases' archives. A server
/// backup that is not full is refused field by field.
#[tokio::test(flavor = "multi_thread")]
async fn a_whole_server_configuration_finds_new_databases_and_retention_deletes_its_sets() {
    use safehold_core::configurations::{self, BackupType, ConfigurationInput};
    use safehold_core::{demo, history::JobStatus, runs};
    let Some(servers) = servers() else { return };
    let Some(server) = servers.iter().find(|(v, _)| *v == 15).map(|(_, u)| u.clone()) else {
        eprintln!("skipped: needs PostgreSQL 15 in the matrix");
        return;
    };
    let Some((_dir, ctx)) = crate::runs::keychain_home().await else { return };
    demo::ensure(&ctx, false).await.expect("demo");
    let tag = format!("cfg{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let (a, b, skipped) = (format!("{tag}_a"), format!("{tag}_b"), format!("{tag}_scratch"));
    run(&format!("{server}/postgres"), &format!("CREATE DATABASE {a}; CREATE DATABASE {skipped}; DROP ROLE IF EXISTS {tag}_login; CREATE ROLE {tag}_login LOGIN PASSWORD 'login-secret'")).await;
    run(&format!("{server}/{a}"), "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'row ' || i FROM generate_series(1, 50) i").await;
    let mut input = safehold_core::connections::ConnectionInput::from_url("Matrix server", &format!("{server}/postgres")).expect("input");
    input.password = None;
    let conn = safehold_core::connections::add(&ctx, input).await.expect("connection");
    let mut input = configurations::new_input(&ctx, "Whole server", &conn.id, "0 2 * * *").await.expect("input");
    input.whole_server = true;
    input.server_passwords = true;
    input.retention_days = 7;
    // Other tests' databases on this server, and the one this test leaves out.
    input.exclude_databases = Some(format!("safehold_*, srv*, cfg*_scratch, {}", "template*"));
    let err = configurations::create(&ctx, ConfigurationInput { backup_type: BackupType::Incremental, ..input.clone() }).await.expect_err("not full");
    assert!(err.fields.iter().any(|f| f.field == "backup_type" && f.message.contains("full each time")), "{:?}", err.fields);
    let config = configurations::create(&ctx, input).await.expect("configuration");
    assert!(config.whole_server && config.exclude_databases.as_deref().is_some_and(|x| x.contains("cfg*_scratch")));

    let databases_of = |e: &safehold_core::history::BackupExecution| -> Vec<String> {
        let mut v: Vec<String> = e.metadata["databases"].as_array().expect("databases").iter().filter_map(|d| d["database"].as_str().map(str::to_string)).filter(|d| d.starts_with(&tag)).collect();
        v.sort();
        v
    };
    let first = runs::run(&ctx, &runs::enqueue(&ctx, &config.id).await.expect("enqueue"), &CancelToken::new()).await.expect("run");
    assert_eq!(first.status, JobStatus::Completed, "{:?}", first.error_message);
    assert_eq!(databases_of(&first), std::slice::from_ref(&a));
    let set_file = first.file_path.clone().expect("the set's archive");
    assert!(std::path::Path::new(&set_file).parent().is_some_and(|p| p.ends_with("servers")), "{set_file}");
    safehold_core::verify::quick(std::path::Path::new(&set_file), first.checksum.as_deref()).expect("the set matches its record");
    let first_members = first.server_members();
    assert!(first_members.len() >= 2 && first_members.iter().all(|m| std::path::Path::new(m).exists()), "postgres and {a}: {first_members:?}");
    assert!(first.record_count.unwrap_or_default() >= 50);

    // A database made after the first run is in the next one.
    run(&format!("{server}/postgres"), &format!("CREATE DATABASE {b}")).await;
    let second = runs::run(&ctx, &runs::enqueue(&ctx, &config.id).await.expect("enqueue"), &CancelToken::new()).await.expect("run");
    assert_eq!(second.status, JobStatus::Completed, "{:?}", second.error_message);
    assert_eq!(databases_of(&second), [a.clone(), b.clone()]);

    // The set opens with the repository's keys and plans a restore of its databases.
    let repo = std::path::Path::new(&set_file).parent().and_then(|p| p.parent()).expect("repository").to_path_buf();
    let keys = safehold_core::keys::custody::key_sources(&ctx).await.expect("keys");
    let mut req = request(&repo, &server);
    req.set_id = second.metadata["archive_id"].as_str().map(str::to_string);
    req.databases = vec![a.clone(), b.clone()];
    let set = servers::open_set(&safehold_core::repository::Repository::open(&repo).expect("repository").expect("a repository"), &keys, req.set_id.as_deref()).await.expect("the set");
    assert!(set.globals.roles.iter().any(|r| r.name == format!("{tag}_login") && r.password_hash.as_deref().is_some_and(|h| h.starts_with("SCRAM-SHA-256$"))), "the password hash is kept when asked");
    let plan = servers::plan(&req, &keys).await.expect("plan");
    let mut planned: Vec<&str> = plan.databases.iter().map(|d| d.database.as_str()).collect();
    planned.sort();
    assert_eq!(planned, [a.as_str(), b.as_str()]);

    // The Restore form names the server restore for such a backup.
    let form = safehold_core::restore::records::RestoreForm {
        backup_execution_id: second.id.clone(),
        connection_id: conn.id.clone(),
        target_file: None,
        restore_type: safehold_core::restore::RestoreType::Full,
        tables: vec![],
        exclude_tables: vec![],
        tenant_id: None,
        preserve_ids: true,
        new_tenant_id: None,
        new_tenant_name: None,
        on_conflict: None,
        restore_point: None,
        safety_backup: true,
        clean: false,
        skip_unsupported: None,
        owners_and_privileges: None,
    };
    let refused = safehold_core::restore::records::plan(&ctx, &form).await.expect_err("a set is not restored as one database");
    assert!(refused.message.contains("server backup") && refused.message.contains("--server") && refused.message.contains(&b), "{}", refused.message);

    // Retention a month on: the first set and its databases' archives go; the newest full stays.
    let gone = safehold_core::retention::apply_at(&ctx, &config.id, chrono::Utc::now() + chrono::Duration::days(30)).await.expect("retention");
    assert_eq!(gone.delete_count, 1, "{gone:?}");
    assert!(!std::path::Path::new(&set_file).exists() && first_members.iter().all(|m| !std::path::Path::new(m).exists()), "the set and its databases are deleted");
    assert!(second.server_members().iter().all(|m| std::path::Path::new(m).exists()), "the kept set keeps its databases");

    let mut c = PgConnection::connect(&format!("{server}/postgres")).await.expect("connect");
    for d in [&a, &b, &skipped] {
        let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {d} WITH (FORCE)"))).execute(&mut c).await;
    }
    let _ = sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {tag}_login"))).execute(&mut c).await;
}
