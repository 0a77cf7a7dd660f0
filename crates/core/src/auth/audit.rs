//! The audit log, read: who did what, to what, when, and how it ended — filtered, and exported
//! as CSV. Written by [`crate::catalog::audit`]; append-only (triggers refuse updates and deletes).

use std::path::Path;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::catalog::audit;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::context::{require, Permission};

#[derive(Debug, Clone, Serialize, TS, sqlx::FromRow, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub operator_id: Option<String>,
    /// The operator's name (the id when the operator was removed).
    pub operator: Option<String>,
    pub action: String,
    pub target: Option<String>,
    /// success, failure or denied.
    pub outcome: String,
    pub detail: Option<String>,
}

/// What to show; every field narrows the list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, TS)]
pub struct AuditFilter {
    /// The operator's name or id.
    pub operator: Option<String>,
    /// An action or its prefix (`backup.` for every backup action).
    pub action: Option<String>,
    pub outcome: Option<String>,
    /// RFC 3339 bounds on `at`.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Newest first; default 500.
    pub limit: Option<i64>,
}

/// The entries matching `filter`, newest first.
pub async fn list(ctx: &Ctx, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
    require(ctx, Permission::ViewHistory, "audit.view", "audit log").await?;
    query(ctx, filter).await
}

async fn query(ctx: &Ctx, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
    let some = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    if let Some(o) = some(&f.outcome) {
        if !["success", "failure", "denied"].contains(&o.as_str()) {
            return Err(Error::validation(format!("unknown outcome \"{o}\": use success, failure or denied")));
        }
    }
    for bound in [&f.since, &f.until].into_iter().filter_map(some) {
        if chrono::DateTime::parse_from_rfc3339(&bound).is_err() && chrono::NaiveDate::parse_from_str(&bound, "%Y-%m-%d").is_err() {
            return Err(Error::validation(format!("\"{bound}\" is not a date: use 2026-12-01 or 2026-12-01T10:00:00Z")));
        }
    }
    sqlx::query_as(
        "SELECT a.id, a.at, a.operator_id, coalesce(o.name, a.operator_id) AS operator, a.action, a.target, a.outcome, a.detail \
         FROM audit_log a LEFT JOIN operators o ON o.id = a.operator_id \
         WHERE (?1 IS NULL OR o.name = ?1 OR a.operator_id = ?1) AND (?2 IS NULL OR a.action = ?2 OR a.action LIKE ?2 || '%') \
           AND (?3 IS NULL OR a.outcome = ?3) AND (?4 IS NULL OR a.at >= ?4) AND (?5 IS NULL OR a.at < ?5) \
         ORDER BY a.id DESC LIMIT ?6",
    )
    .bind(some(&f.operator))
    .bind(some(&f.action))
    .bind(some(&f.outcome))
    .bind(some(&f.since))
    .bind(some(&f.until))
    .bind(f.limit.unwrap_or(500).clamp(1, 1_000_000))
    .fetch_all(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("read the audit log", &e))
}

/// Writes the entries matching `filter` to `path` as CSV (oldest first); returns how many. The
/// export is itself audited.
pub async fn export_csv(ctx: &Ctx, filter: &AuditFilter, path: &Path) -> Result<usize> {
    // Writing the log out (operators' names, what they did, to a file anyone may later read) is
    // a super admin's: the permission that grants it is manage_all.
    let who = require(ctx, Permission::ManageAll, "audit.export", &path.display().to_string()).await?;
    if path.exists() && !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        return Err(Error::validation(format!("{} exists and is not a .csv file: the audit log replaces only a CSV file; choose a new name", path.display())));
    }
    let mut f = filter.clone();
    f.limit = Some(f.limit.unwrap_or(1_000_000));
    let mut rows = query(ctx, &f).await?;
    rows.reverse();
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| Error::new(crate::error::ErrorCode::Internal, format!("cannot write the CSV: {e}"));
    w.write_record(["id", "at", "operator", "operator_id", "action", "target", "outcome", "detail"]).map_err(io)?;
    // A cell a spreadsheet would take for a formula (a crafted name, a target) is written as text.
    let cell = |v: &str| if v.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{v}") } else { v.to_string() };
    for r in &rows {
        w.write_record([
            r.id.to_string(),
            cell(&r.at),
            cell(r.operator.as_deref().unwrap_or("")),
            cell(r.operator_id.as_deref().unwrap_or("")),
            cell(&r.action),
            cell(r.target.as_deref().unwrap_or("")),
            cell(&r.outcome),
            cell(r.detail.as_deref().unwrap_or("")),
        ])
        .map_err(io)?;
    }
    let data = w.into_inner().map_err(|e| Error::new(crate::error::ErrorCode::Internal, e.to_string()).caused_by(&e))?;
    // Written whole or not at all.
    let tmp = crate::private::partial_beside(path);
    crate::private::write(&tmp, &data).map_err(|e| Error::io(format!("cannot write {}", tmp.display()), &e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("cannot write {}", path.display()), &e)
    })?;
    audit(&ctx.pool, &who.id, "audit.export", &path.display().to_string(), "success", Some(&format!("{} entries", rows.len()))).await?;
    Ok(rows.len())
}
