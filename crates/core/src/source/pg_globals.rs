//! A PostgreSQL server's globals: what belongs to the server rather than to one database — roles
//! (attributes, memberships, `ALTER ROLE … SET`, comments, password hashes only when asked),
//! tablespaces' names, and each database's properties (owner, encoding, locale and its provider,
//! connection limit, `ALTER DATABASE … SET`, comment, grants on the database). Read from the
//! catalog on every version from 13 to 18, and written onto a server of any of them: what the
//! target's version cannot hold is named before anything is written ([`check`]).

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgConnection, Row};
use ts_rs::TS;

use super::postgres::{q, qi, ql};
use crate::error::{Error, ErrorCode, Result};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Globals {
    pub server_version: String,
    pub server_version_num: i32,
    pub roles: Vec<Role>,
    pub memberships: Vec<Membership>,
    pub tablespaces: Vec<Tablespace>,
    pub databases: Vec<DatabaseProps>,
    /// Settings of a role in every database (`ALTER ROLE r IN DATABASE d SET …`).
    pub role_database_settings: Vec<RoleDatabaseSetting>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Role {
    pub name: String,
    pub superuser: bool,
    pub inherit: bool,
    pub create_role: bool,
    pub create_db: bool,
    pub login: bool,
    pub replication: bool,
    pub bypass_rls: bool,
    pub connection_limit: i32,
    pub valid_until: Option<String>,
    /// The password's hash (SCRAM or MD5), only when the backup was asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// `ALTER ROLE … SET` in every database, as `name=value`.
    pub settings: Vec<String>,
    pub comment: Option<String>,
    /// The server's bootstrap superuser (made by `initdb`): it exists on every server.
    pub bootstrap: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Membership {
    pub role: String,
    pub member: String,
    pub admin: bool,
    /// PostgreSQL 16 and later: the membership's own INHERIT and SET options.
    pub inherit: Option<bool>,
    pub set: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tablespace {
    pub name: String,
    pub owner: String,
    pub location: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoleDatabaseSetting {
    pub role: String,
    pub database: String,
    pub setting: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct DatabaseProps {
    pub name: String,
    pub owner: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// `c` (libc), `i` (ICU, PostgreSQL 15+) or `b` (builtin, PostgreSQL 17+).
    pub locale_provider: String,
    /// The ICU or builtin locale.
    pub locale: Option<String>,
    pub icu_rules: Option<String>,
    pub connection_limit: i32,
    /// `ALTER DATABASE … SET`, as `name=value`.
    pub settings: Vec<String>,
    pub comment: Option<String>,
    /// The database's grants; `None`: the defaults (its owner, and CONNECT and TEMP to PUBLIC).
    pub grants: Option<Vec<Grant>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Grant {
    /// `None`: PUBLIC.
    pub grantee: Option<String>,
    pub privilege: String,
    pub grantable: bool,
}

/// The databases of the server to back up: every one that accepts connections and is not a
/// template, but those named in `exclude` (`*` matches any run of characters).
pub async fn databases(conn: &mut PgConnection, exclude: &[String]) -> Result<Vec<String>> {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY 1")
        .fetch_all(&mut *conn)
        .await
        .map_err(q("list the server's databases"))?;
    Ok(names.into_iter().filter(|n| !exclude.iter().any(|p| glob(p, n))).collect())
}

/// `*` matches any run of characters; everything else itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            let Some(at) = rest.find(p) else { return false };
            rest = &rest[at + p.len()..];
        }
    }
    true
}

/// Reads the globals, and the properties of `databases`. Password hashes only `with_passwords`
/// (which needs a superuser: `pg_authid` is readable by no one else).
pub async fn read(conn: &mut PgConnection, databases: &[String], with_passwords: bool) -> Result<Globals> {
    let (version, num): (String, String) = sqlx::query_as("SELECT current_setting('server_version'), current_setting('server_version_num')").fetch_one(&mut *conn).await.map_err(q("read the version"))?;
    let num: i32 = num.parse().unwrap_or(0);
    let mut g = Globals { server_version: version, server_version_num: num, ..Default::default() };
    let rows = sqlx::query(
        "SELECT r.rolname::text, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit, \
                to_char(r.rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), shobj_description(r.oid, 'pg_authid'), r.oid = 10 \
         FROM pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the roles"))?;
    for r in rows {
        g.roles.push(Role {
            name: r.get(0),
            superuser: r.get(1),
            inherit: r.get(2),
            create_role: r.get(3),
            create_db: r.get(4),
            login: r.get(5),
            replication: r.get(6),
            bypass_rls: r.get(7),
            connection_limit: r.get(8),
            // 'infinity' is no limit at all.
            valid_until: r.get::<Option<String>, _>(9).filter(|v| !v.contains("finity")),
            password_hash: None,
            settings: Vec::new(),
            comment: r.get(10),
            bootstrap: r.get(11),
        });
    }
    if with_passwords {
        let hashes: Vec<(String, Option<String>)> = sqlx::query_as("SELECT rolname::text, rolpassword FROM pg_authid WHERE rolname !~ '^pg_'").fetch_all(&mut *conn).await.map_err(|e| {
            Error::new(ErrorCode::PermissionDenied, format!("the password hashes are readable only by a superuser ({e}): back up as one, or leave out --with-passwords")).caused_by(&e)
        })?;
        for (name, hash) in hashes {
            if let Some(role) = g.roles.iter_mut().find(|r| r.name == name) {
                role.password_hash = hash;
            }
        }
    }
    let options = if num >= 160000 { "m.inherit_option, m.set_option" } else { "NULL::bool, NULL::bool" };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT r.rolname::text, u.rolname::text, m.admin_option, {options} FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
         WHERE u.rolname !~ '^pg_' ORDER BY 1, 2"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the role memberships"))?;
    for r in rows {
        g.memberships.push(Membership { role: r.get(0), member: r.get(1), admin: r.get(2), inherit: r.get(3), set: r.get(4) });
    }
    let rows = sqlx::query(
        "SELECT r.rolname::text, d.datname::text, unnest(s.setconfig) FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the role and database settings"))?;
    let mut database_settings: Vec<(String, String)> = Vec::new();
    for r in rows {
        let (role, db, setting): (Option<String>, Option<String>, String) = (r.get(0), r.get(1), r.get(2));
        match (role, db) {
            (Some(role), None) => {
                if let Some(x) = g.roles.iter_mut().find(|x| x.name == role) {
                    x.settings.push(setting);
                }
            }
            (Some(role), Some(database)) => g.role_database_settings.push(RoleDatabaseSetting { role, database, setting }),
            (None, Some(db)) => database_settings.push((db, setting)),
            (None, None) => {}
        }
    }
    for r in sqlx::query("SELECT spcname::text, pg_get_userbyid(spcowner)::text, pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1")
        .fetch_all(&mut *conn)
        .await
        .map_err(q("read the tablespaces"))?
    {
        g.tablespaces.push(Tablespace { name: r.get(0), owner: r.get(1), location: r.get(2) });
    }
    let locale = match num {
        n if n >= 170000 => "d.datlocprovider::text, d.datlocale::text, d.daticurules::text",
        n if n >= 160000 => "d.datlocprovider::text, d.daticulocale::text, d.daticurules::text",
        n if n >= 150000 => "d.datlocprovider::text, d.daticulocale::text, NULL::text",
        _ => "'c'::text, NULL::text, NULL::text",
    };
    for name in databases {
        let Some(r) = sqlx::query(AssertSqlSafe(format!(
            "SELECT pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding)::text, d.datcollate::text, d.datctype::text, {locale}, d.datconnlimit, \
                    shobj_description(d.oid, 'pg_database'), d.datacl IS NULL FROM pg_database d WHERE d.datname = $1"
        )))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(q("read the databases' properties"))?
        else {
            continue;
        };
        let grants = if r.get::<bool, _>(9) {
            None
        } else {
            let rows: Vec<(Option<String>, String, bool)> = sqlx::query_as(
                "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type, a.is_grantable \
                 FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = $1 AND a.grantee <> d.datdba ORDER BY 1 NULLS FIRST, 2",
            )
            .bind(name)
            .fetch_all(&mut *conn)
            .await
            .map_err(q("read the grants on databases"))?;
            Some(rows.into_iter().map(|(grantee, privilege, grantable)| Grant { grantee, privilege, grantable }).collect())
        };
        g.databases.push(DatabaseProps {
            name: name.clone(),
            owner: r.get(0),
            encoding: r.get(1),
            collate: r.get(2),
            ctype: r.get(3),
            locale_provider: r.get(4),
            locale: r.get(5),
            icu_rules: r.get(6),
            connection_limit: r.get(7),
            settings: database_settings.iter().filter(|(d, _)| d == name).map(|(_, s)| s.clone()).collect(),
            comment: r.get(8),
            grants,
        });
    }
    Ok(g)
}

/// What a restore of `globals` finds on the target server.
#[derive(Debug, Clone, Serialize, Default, TS)]
pub struct Target {
    pub version: String,
    pub version_num: i32,
    pub roles: Vec<String>,
    pub databases: Vec<String>,
    /// Every setting the server knows (a setting it does not know cannot be set on a role).
    #[serde(skip)]
    #[ts(skip)]
    pub settings: Vec<String>,
}

pub async fn target(conn: &mut PgConnection) -> Result<Target> {
    let (version, num): (String, String) = sqlx::query_as("SELECT current_setting('server_version'), current_setting('server_version_num')").fetch_one(&mut *conn).await.map_err(q("read the version"))?;
    let roles = sqlx::query_scalar("SELECT rolname::text FROM pg_roles ORDER BY 1").fetch_all(&mut *conn).await.map_err(q("read the target's roles"))?;
    let databases = sqlx::query_scalar("SELECT datname::text FROM pg_database ORDER BY 1").fetch_all(&mut *conn).await.map_err(q("read the target's databases"))?;
    let settings = sqlx::query_scalar("SELECT name::text FROM pg_settings").fetch_all(&mut *conn).await.map_err(q("read the target's settings"))?;
    Ok(Target { version, version_num: num.parse().unwrap_or(0), roles, databases, settings })
}

fn setting_name(setting: &str) -> &str {
    setting.split_once('=').map(|(n, _)| n).unwrap_or(setting)
}

/// What the target's version cannot hold of the roles and databases to be made, each named
/// with the reason: a restore refuses them unless asked to leave them out.
pub fn check(g: &Globals, roles: &[&Role], databases: &[&DatabaseProps], t: &Target) -> Vec<String> {
    let mut out = Vec::new();
    let major = |n: i32| n / 10000;
    let unknown = |s: &str| {
        let name = setting_name(s);
        !name.contains('.') && !t.settings.iter().any(|k| k.eq_ignore_ascii_case(name))
    };
    for r in roles {
        for s in r.settings.iter().filter(|s| unknown(s)) {
            out.push(role_setting_gap(r, s, t));
        }
    }
    for m in memberships_for(g, roles) {
        out.extend(membership_gaps(g, m, t));
    }
    for d in databases {
        match d.locale_provider.as_str() {
            "i" if t.version_num < 150000 => out.push(format!("database {}: an ICU locale ({}) for a database needs PostgreSQL 15 (the target is {})", d.name, d.locale.clone().unwrap_or_default(), major(t.version_num))),
            "b" if t.version_num < 170000 => out.push(format!("database {}: the builtin locale provider needs PostgreSQL 17 (the target is {})", d.name, major(t.version_num))),
            _ => {}
        }
        if d.icu_rules.is_some() && t.version_num < 160000 {
            out.push(format!("database {}: ICU rules need PostgreSQL 16 (the target is {})", d.name, major(t.version_num)));
        }
        for s in d.settings.iter().filter(|s| unknown(s)) {
            out.push(format!("database {}: setting {} does not exist on PostgreSQL {}", d.name, setting_name(s), major(t.version_num)));
        }
    }
    out
}

/// What [`check`] says of a role's setting the target does not have.
fn role_setting_gap(r: &Role, setting: &str, t: &Target) -> String {
    format!("role {}: setting {} does not exist on PostgreSQL {}", r.name, setting_name(setting), t.version_num / 10000)
}

/// What [`check`] says of a membership the target cannot hold as it is (nothing when it can).
fn membership_gaps(g: &Globals, m: &Membership, t: &Target) -> Vec<String> {
    let mut out = Vec::new();
    let major = t.version_num / 10000;
    if m.role.starts_with("pg_") && !t.roles.contains(&m.role) {
        out.push(format!("membership of {} in {}: PostgreSQL {major} has no role {}", m.member, m.role, m.role));
    }
    if t.version_num < 160000 && (m.set == Some(false) || m.inherit.is_some_and(|i| Some(i) != g.roles.iter().find(|r| r.name == m.member).map(|r| r.inherit))) {
        out.push(format!("membership of {} in {}: its own INHERIT or SET option needs PostgreSQL 16 (the target is {major})", m.member, m.role));
    }
    out
}

/// The memberships among `roles` (and in the server's own `pg_` roles).
pub fn memberships_for<'a>(g: &'a Globals, roles: &[&Role]) -> Vec<&'a Membership> {
    let has = |n: &str| roles.iter().any(|r| r.name == n);
    g.memberships.iter().filter(|m| has(&m.member) && (has(&m.role) || m.role.starts_with("pg_"))).collect()
}

/// The roles a restore of `databases` needs: their owners, the grantees of their grants, the
/// roles with settings in them, `inside` (the owners and grantees of their objects, when those
/// are restored), and every role these are members of.
pub fn needed<'a>(g: &'a Globals, databases: &[&DatabaseProps], inside: &std::collections::BTreeSet<String>) -> Vec<&'a Role> {
    let mut names: std::collections::BTreeSet<String> = inside.clone();
    for d in databases {
        names.insert(d.owner.clone());
        for gr in d.grants.iter().flatten() {
            if let Some(n) = &gr.grantee {
                names.insert(n.clone());
            }
        }
        for s in g.role_database_settings.iter().filter(|s| s.database == d.name) {
            names.insert(s.role.clone());
        }
    }
    loop {
        let more: Vec<String> = g.memberships.iter().filter(|m| names.contains(&m.member) && !names.contains(&m.role)).map(|m| m.role.clone()).collect();
        if more.is_empty() {
            break;
        }
        names.extend(more);
    }
    g.roles.iter().filter(|r| names.contains(&r.name)).collect()
}

/// pg_dump's list of settings whose value is a list of separately quoted items.
fn is_list_setting(name: &str) -> bool {
    matches!(name.to_ascii_lowercase().as_str(), "search_path" | "temp_tablespaces" | "session_preload_libraries" | "shared_preload_libraries" | "local_preload_libraries" | "unix_socket_directories")
}

/// `name = value` for `ALTER ROLE/DATABASE … SET`: the value a literal, a list setting's items
/// each one (as the catalog keeps them: `a, "b c"`).
fn set_clause(setting: &str) -> Result<String> {
    let (name, value) = setting.split_once('=').ok_or_else(|| Error::validation(format!("the setting \"{setting}\" has no value")))?;
    if !is_list_setting(name) {
        return Ok(format!("{} = {}", qi(name), ql(value)));
    }
    let items = super::pg_create::split_quoted(value, ',');
    Ok(format!("{} = {}", qi(name), items.iter().map(|i| ql(i.trim_end())).collect::<Vec<_>>().join(", ")))
}

/// Creates `roles` (those the target lacks) with their attributes, comments and settings, then
/// the memberships among them, in the caller's transaction. Returns the roles created.
pub async fn create_roles(tx: &mut PgConnection, g: &Globals, roles: &[&Role], t: &Target, skip: &[String]) -> Result<Vec<String>> {
    let mut created = Vec::new();
    // What the caller agreed to leave out: exactly what check() said of it.
    let skipped = |what: String| skip.contains(&what);
    for r in roles.iter().filter(|r| !t.roles.contains(&r.name)) {
        let mut attrs = Vec::new();
        for (on, yes, no) in [
            (r.superuser, "SUPERUSER", "NOSUPERUSER"),
            (r.inherit, "INHERIT", "NOINHERIT"),
            (r.create_role, "CREATEROLE", "NOCREATEROLE"),
            (r.create_db, "CREATEDB", "NOCREATEDB"),
            (r.login, "LOGIN", "NOLOGIN"),
            (r.replication, "REPLICATION", "NOREPLICATION"),
            (r.bypass_rls, "BYPASSRLS", "NOBYPASSRLS"),
        ] {
            attrs.push(if on { yes } else { no }.to_string());
        }
        attrs.push(format!("CONNECTION LIMIT {}", r.connection_limit));
        if let Some(v) = &r.valid_until {
            attrs.push(format!("VALID UNTIL {}", ql(v)));
        }
        if let Some(h) = &r.password_hash {
            attrs.push(format!("PASSWORD {}", ql(h)));
        }
        exec(tx, &format!("CREATE ROLE {} WITH {}", qi(&r.name), attrs.join(" ")), &format!("role {}", r.name)).await?;
        if let Some(c) = &r.comment {
            exec(tx, &format!("COMMENT ON ROLE {} IS {}", qi(&r.name), ql(c)), &format!("the comment on role {}", r.name)).await?;
        }
        for s in &r.settings {
            if skipped(role_setting_gap(r, s, t)) {
                continue;
            }
            exec(tx, &format!("ALTER ROLE {} SET {}", qi(&r.name), set_clause(s)?), &format!("a setting of role {}", r.name)).await?;
        }
        created.push(r.name.clone());
    }
    for m in memberships_for(g, roles) {
        if membership_gaps(g, m, t).into_iter().any(skipped) {
            continue;
        }
        // Only memberships of a role created here: an existing role's are left as they are.
        if !created.contains(&m.member) {
            continue;
        }
        let mut with = Vec::new();
        if t.version_num >= 160000 {
            with.push(format!("ADMIN {}", m.admin));
            if let Some(i) = m.inherit {
                with.push(format!("INHERIT {i}"));
            }
            if let Some(s) = m.set {
                with.push(format!("SET {s}"));
            }
        } else if m.admin {
            with.push("ADMIN OPTION".into());
        }
        let with = if with.is_empty() { String::new() } else { format!(" WITH {}", with.join(", ")) };
        exec(tx, &format!("GRANT {} TO {}{with}", qi(&m.role), qi(&m.member)), &format!("the membership of {} in {}", m.member, m.role)).await?;
    }
    Ok(created)
}

/// The `CREATE DATABASE` options that give a new database `d`'s properties on the target.
pub fn create_options(d: &DatabaseProps, t: &Target, owner_exists: bool) -> String {
    let mut o = vec!["TEMPLATE template0".to_string(), format!("ENCODING {}", ql(&d.encoding)), format!("LC_COLLATE {}", ql(&d.collate)), format!("LC_CTYPE {}", ql(&d.ctype))];
    match (d.locale_provider.as_str(), &d.locale) {
        ("i", Some(l)) if t.version_num >= 150000 => {
            o.push("LOCALE_PROVIDER icu".into());
            o.push(format!("ICU_LOCALE {}", ql(l)));
            if let (Some(rules), true) = (&d.icu_rules, t.version_num >= 160000) {
                o.push(format!("ICU_RULES {}", ql(rules)));
            }
        }
        ("b", Some(l)) if t.version_num >= 170000 => {
            o.push("LOCALE_PROVIDER builtin".into());
            o.push(format!("BUILTIN_LOCALE {}", ql(l)));
        }
        _ => {}
    }
    if owner_exists {
        o.push(format!("OWNER {}", qi(&d.owner)));
    }
    o.push(format!("CONNECTION LIMIT {}", d.connection_limit));
    o.join(" ")
}

/// Gives the database `name` (made with [`create_options`], or an empty one the target had:
/// then `set_owner`) `d`'s settings, comment and grants, and the role settings in it: on an
/// administrative connection to the server.
pub async fn apply_database(conn: &mut PgConnection, name: &str, d: &DatabaseProps, g: &Globals, t: &Target, skip: &[String], set_owner: bool) -> Result<()> {
    let db = qi(name);
    if set_owner {
        exec(conn, &format!("ALTER DATABASE {db} OWNER TO {}", qi(&d.owner)), &format!("the owner of database {}", d.name)).await?;
    }
    for s in &d.settings {
        if skip.iter().any(|x| x == &format!("database {}: setting {} does not exist on PostgreSQL {}", d.name, setting_name(s), t.version_num / 10000)) {
            continue;
        }
        exec(conn, &format!("ALTER DATABASE {db} SET {}", set_clause(s)?), &format!("a setting of database {}", d.name)).await?;
    }
    if let Some(c) = &d.comment {
        exec(conn, &format!("COMMENT ON DATABASE {db} IS {}", ql(c)), &format!("the comment on database {}", d.name)).await?;
    }
    let exists: Vec<String> = sqlx::query_scalar("SELECT rolname::text FROM pg_roles").fetch_all(&mut *conn).await.map_err(q("read the roles"))?;
    if let Some(grants) = &d.grants {
        exec(conn, &format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"), &format!("the grants on database {}", d.name)).await?;
        for gr in grants {
            let to = match &gr.grantee {
                None => "PUBLIC".to_string(),
                Some(n) if exists.contains(n) => qi(n),
                Some(_) => continue,
            };
            let option = if gr.grantable { " WITH GRANT OPTION" } else { "" };
            // The privilege's name comes from the catalog's own list of database privileges.
            let privilege = match gr.privilege.as_str() {
                p @ ("CREATE" | "CONNECT" | "TEMPORARY") => p,
                other => return Err(Error::validation(format!("the grant of {other} on database {} is not a database privilege", d.name))),
            };
            exec(conn, &format!("GRANT {privilege} ON DATABASE {db} TO {to}{option}"), &format!("the grants on database {}", d.name)).await?;
        }
    }
    for s in g.role_database_settings.iter().filter(|s| s.database == d.name && exists.contains(&s.role)) {
        exec(conn, &format!("ALTER ROLE {} IN DATABASE {db} SET {}", qi(&s.role), set_clause(&s.setting)?), &format!("a setting of role {} in database {}", s.role, d.name)).await?;
    }
    Ok(())
}

/// Drops the roles a failed restore created (in reverse order; a role that came to own something
/// meanwhile is left, and said).
pub async fn drop_roles(conn: &mut PgConnection, roles: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for r in roles.iter().rev() {
        if sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {}", qi(r)))).execute(&mut *conn).await.is_err() {
            left.push(r.clone());
        }
    }
    left
}

async fn exec(conn: &mut PgConnection, sql: &str, what: &str) -> Result<()> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| Error::new(ErrorCode::Database, format!("could not create {what}: {e}")).caused_by(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_settings_keep_each_item_quoted() {
        assert_eq!(set_clause("search_path=app, \"my schema\", public").unwrap(), "\"search_path\" = 'app', 'my schema', 'public'");
        assert_eq!(set_clause("work_mem=64MB").unwrap(), "\"work_mem\" = '64MB'");
        assert_eq!(set_clause("application_name=it's=here").unwrap(), "\"application_name\" = 'it''s=here'");
        assert!(set_clause("novalue").is_err());
    }

    #[test]
    fn globs_match_as_shells_do() {
        assert!(glob("test_*", "test_1"));
        assert!(!glob("test_*", "prod"));
        assert!(glob("*_old", "app_old"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXc"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }
}
