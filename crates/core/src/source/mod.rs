//! Sources: the databases Safehold backs up. Each takes a consistent snapshot, writes its schema
//! and one section per table into an archive, and restores them into an empty target.

pub mod pg_access;
pub mod pg_apply;
pub mod pg_logical;
pub mod pg_stream;
mod pg_create;
mod pg_objects;
pub mod pg_stats;
mod pg_extdata;
pub use pg_objects::user_mapping_role;
pub mod pg_globals;
mod pg_parallel;
pub mod postgres;
pub mod sqlite;
pub mod tenancy;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where to read from or write to.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    Postgres { url: String },
    Sqlite { path: PathBuf },
}

impl SourceSpec {
    /// `postgres://…`, `postgresql://…` or `sqlite:///path`.
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(p) = url.strip_prefix("sqlite://") {
            if p.is_empty() {
                return Err(Error::validation("give the SQLite file after sqlite://, e.g. sqlite:///var/lib/app.db"));
            }
            return Ok(SourceSpec::Sqlite { path: PathBuf::from(p) });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(SourceSpec::Postgres { url: url.to_string() });
        }
        Err(Error::validation(format!(
            "unsupported database URL \"{}\"; use postgres://user@host:5432/db or sqlite:///path/to.db",
            redact(url)
        )))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Postgres { .. } => "postgres",
            SourceSpec::Sqlite { .. } => "sqlite",
        }
    }

    /// A display form without any password.
    pub fn display(&self) -> String {
        match self {
            SourceSpec::Postgres { url } => redact(url),
            SourceSpec::Sqlite { path } => format!("sqlite://{}", path.display()),
        }
    }
}

/// Removes the password from a URL for display.
/// A URL part (a password, a database name) with its `%XX` escapes decoded; `+` and a `%` not
/// followed by two hexadecimal digits stay as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// What a backup includes, from a configuration's `includes_*` flags.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Include {
    pub tenant_data: bool,
    pub system_data: bool,
    pub logs: bool,
}

impl Default for Include {
    fn default() -> Self {
        Self { tenant_data: true, system_data: true, logs: true }
    }
}

/// How a table is classified for `Include`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableClass {
    Tenant,
    System,
    Log,
}

impl Include {
    pub fn wants(&self, class: TableClass) -> bool {
        match class {
            TableClass::Tenant => self.tenant_data,
            TableClass::System => self.system_data,
            TableClass::Log => self.logs,
        }
    }
}

/// Log tables by name: `*_log`, `*_logs`, `audit_*`.
pub fn is_log_table(name: &str) -> bool {
    let n = name.to_lowercase();
    n.ends_with("_log") || n.ends_with("_logs") || n.starts_with("audit_")
}

/// Classifies tables: tenant tables have the tenant column or reach a tenant table through foreign
/// keys (the tenants table counts as tenant data); log tables go by name; the rest is system data.
pub fn classify(
    tables: &[String],
    has_tenant_column: &dyn Fn(&str) -> bool,
    fks: &[(String, String)],
    tenants_table: &str,
) -> std::collections::BTreeMap<String, TableClass> {
    let mut tenant: std::collections::BTreeSet<String> =
        tables.iter().filter(|t| has_tenant_column(t) || bare(t) == tenants_table || t.as_str() == tenants_table).cloned().collect();
    loop {
        let before = tenant.len();
        for (child, parent) in fks {
            if tenant.contains(parent) && bare(parent) != tenants_table && parent.as_str() != tenants_table && !tenant.contains(child) {
                tenant.insert(child.clone());
            }
        }
        if tenant.len() == before {
            break;
        }
    }
    tables
        .iter()
        .map(|t| {
            let class = if is_log_table(&bare(t)) {
                TableClass::Log
            } else if tenant.contains(t) {
                TableClass::Tenant
            } else {
                TableClass::System
            };
            (t.clone(), class)
        })
        .collect()
}

fn bare(qualified: &str) -> String {
    tenancy::bare(qualified)
}

pub use crate::jobs::{no_progress, CancelToken, Progress, ProgressSink};

/// What a dump counted.
#[derive(Debug, Clone, Default)]
pub struct DumpStats {
    pub tables: u64,
    pub rows: u64,
    pub tenant_count: u64,
    /// What the administrator should know about the source (a transaction left open for long).
    pub warnings: Vec<String>,
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What a backup reads of a source: the tenancy it records, which objects and tables, whose rows
/// (a tenant export), and on how many connections.
#[derive(Debug, Clone)]
pub struct DumpScope {
    pub tenant_column: String,
    pub tenants_table: String,
    pub include: Include,
    /// Only these tables (`schema.table`).
    pub tables: Option<std::collections::BTreeSet<String>>,
    /// Only these tenants' rows of the tenant tables.
    pub tenants: Vec<String>,
    /// A tenant of `tenants` the database does not have is no error (a safety backup before a
    /// deleted tenant is restored: it has no row to keep).
    pub absent_tenants_ok: bool,
    pub jobs: usize,
    /// A transaction open longer than this at the snapshot is warned about.
    pub long_transaction: std::time::Duration,
}

/// A threshold: as set for the task awaited inside `here`'s scope (tests), else by the
/// environment variable `env`, else `default`.
pub(crate) fn threshold<T: Copy + std::str::FromStr + 'static>(here: &'static tokio::task::LocalKey<T>, env: &str, default: T) -> T {
    here.try_with(|v| *v).ok().or_else(|| std::env::var(env).ok().and_then(|v| v.parse().ok())).unwrap_or(default)
}
