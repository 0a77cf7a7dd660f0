//! Change capture from PostgreSQL's logical decoding, for continuous protection (issue 24): the
//! server's prerequisites checked with what to change, a publication and a logical replication
//! slot per protected database (the built-in `pgoutput` plugin), committed transactions read
//! through `pg_logical_slot_peek_binary_changes` and decoded here, and the slot advanced only by
//! the caller once what it read is stored.
//!
//! This polling is what a single step uses; the long-running loops stream the slot instead
//! (`pg_stream.rs`: the server decodes each change once, where a peek decodes the slot's WAL again
//! at every read and an advance once more). Both hand out whole committed transactions only, and
//! the slot moves only after the segment is durable, so a crash between the two re-reads (and the
//! segment's LSN range drops) what was stored, never loses it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::postgres::{q, qi};
use crate::error::{Error, ErrorCode, Result};

/// A slot or publication name Safehold makes: lower-case letters, digits and `_` only (a slot's
/// name allows nothing else).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// What the server lacks for continuous protection, each with what to change; empty when ready.
pub async fn missing_prerequisites(conn: &mut PgConnection) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let wal_level: String = sqlx::query_scalar("SELECT current_setting('wal_level')").fetch_one(&mut *conn).await.map_err(q("read wal_level"))?;
    if wal_level != "logical" {
        out.push(format!("wal_level is {wal_level}: set wal_level = logical in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart the server"));
    }
    let (superuser, replication): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user").fetch_one(&mut *conn).await.map_err(q("read the role"))?;
    if !superuser && !replication {
        out.push("the role Safehold connects as has no REPLICATION attribute: ALTER ROLE … WITH REPLICATION (a superuser also creates the publication of every table)".into());
    }
    let free: i64 = sqlx::query_scalar("SELECT current_setting('max_replication_slots')::bigint - (SELECT count(*) FROM pg_replication_slots)")
        .fetch_one(&mut *conn)
        .await
        .map_err(q("count the replication slots"))?;
    if free < 1 {
        out.push("every replication slot is taken: raise max_replication_slots in postgresql.conf and restart, or drop a slot nobody uses".into());
    }
    // A table in a publication of updates and deletes needs a replica identity, or the
    // application's own UPDATE and DELETE fail on it: such tables are named, never changed here.
    let keyless: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
           AND NOT c.relispartition
           AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
         ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("look for tables without a replica identity"))?;
    if !keyless.is_empty() {
        out.push(format!(
            "tables without a primary key or replica identity cannot be followed (their updates and deletes would fail once published): {}; give each a primary key, or ALTER TABLE … REPLICA IDENTITY FULL",
            keyless.join(", ")
        ));
    }
    Ok(out)
}

/// How long making a slot may wait for the transactions open on the server.
pub const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Creates the publication of every table and the logical slot; returns the slot's consistent
/// point (every transaction committed after it is decoded).
pub async fn create(conn: &mut PgConnection, slot: &str, publication: &str) -> Result<u64> {
    if !valid_name(slot) || !valid_name(publication) {
        return Err(Error::validation(format!("{slot} / {publication}: a slot's and publication's names are lower-case letters, digits and _")));
    }
    let missing = missing_prerequisites(conn).await?;
    if !missing.is_empty() {
        return Err(Error::validation(format!("continuous protection needs: {}", missing.join("; "))));
    }
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)").bind(publication).fetch_one(&mut *conn).await.map_err(q("look for the publication"))?;
    if !exists {
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE PUBLICATION {} FOR ALL TABLES", qi(publication)))).execute(&mut *conn).await.map_err(q("create the publication"))?;
    }
    // A new slot waits for every transaction open on the server to end: never silently.
    sqlx::query("SELECT set_config('statement_timeout', $1, false)").bind(format!("{}s", SLOT_WAIT.as_secs())).execute(&mut *conn).await.map_err(q("set a deadline"))?;
    let made = sqlx::query_scalar::<_, String>("SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')").bind(slot).fetch_one(&mut *conn).await;
    let _ = sqlx::query("SELECT set_config('statement_timeout', '0', false)").execute(&mut *conn).await;
    match made {
        Ok(lsn) => parse_lsn(&lsn),
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("57014") => {
            let open: Vec<String> = sqlx::query_scalar(
                "SELECT format('session %s (%s, open since %s)', pid, coalesce(nullif(application_name, ''), usename::text), to_char(xact_start, 'HH24:MI:SS'))
                 FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY xact_start LIMIT 5",
            )
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
            Err(Error::new(
                ErrorCode::Database,
                format!(
                    "the replication slot was not made within {} s: PostgreSQL makes it once the transactions open now have ended ({}); end them (or wait) and start protection again",
                    SLOT_WAIT.as_secs(),
                    if open.is_empty() { "none visible to this role".to_string() } else { open.join(", ") }
                ),
            ))
        }
        Err(e) => Err(q("create the replication slot")(e)),
    }
}

/// Drops the slot (the server keeps WAL for it no more) and the publication.
pub async fn drop(conn: &mut PgConnection, slot: &str, publication: &str) -> Result<()> {
    // A slot being streamed (by this process or another) cannot be dropped: its walsender is
    // ended first, and the slot waited for until it is released (never silently: a deadline).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let active: Option<Option<i32>> = sqlx::query_scalar("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1").bind(slot).fetch_optional(&mut *conn).await.map_err(q("look for the replication slot"))?;
        let Some(Some(pid)) = active else { break };
        if std::time::Instant::now() > deadline {
            return Err(Error::new(ErrorCode::Conflict, format!("the replication slot {slot} is still in use by the server process {pid} after 30 s; end that session (SELECT pg_terminate_backend({pid})) and try again")));
        }
        sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&mut *conn).await.map_err(q("end the session streaming the replication slot"))?;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sqlx::query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1").bind(slot).execute(&mut *conn).await.map_err(q("drop the replication slot"))?;
    if valid_name(publication) {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP PUBLICATION IF EXISTS {}", qi(publication)))).execute(&mut *conn).await.map_err(q("drop the publication"))?;
    }
    Ok(())
}

/// How far behind the slot is, and what it holds back.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    /// WAL written since the last change confirmed stored.
    pub lag_bytes: u64,
    /// WAL the server keeps for the slot.
    pub held_bytes: u64,
    /// `reserved`, `extended`, `unreserved` or `lost` (PostgreSQL's words).
    pub wal_status: Option<String>,
    /// The server's `max_slot_wal_keep_size` (`-1`: no limit).
    pub max_slot_wal_keep_size: String,
}

pub async fn status(conn: &mut PgConnection, slot: &str) -> Result<Option<SlotStatus>> {
    let row = sqlx::query(
        "SELECT greatest(pg_current_wal_lsn() - confirmed_flush_lsn, 0)::bigint, greatest(pg_current_wal_lsn() - restart_lsn, 0)::bigint, wal_status, current_setting('max_slot_wal_keep_size')
         FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await
    .map_err(q("read the replication slot"))?;
    Ok(row.map(|r| SlotStatus {
        lag_bytes: u64::try_from(r.get::<Option<i64>, _>(0).unwrap_or(0)).unwrap_or(0),
        held_bytes: u64::try_from(r.get::<Option<i64>, _>(1).unwrap_or(0)).unwrap_or(0),
        wal_status: r.get(2),
        max_slot_wal_keep_size: r.get(3),
    }))
}

/// Reads (without consuming) committed transactions from the slot, at most about `max_changes`
/// changes (whole transactions always), decoded.
pub async fn peek(conn: &mut PgConnection, slot: &str, publication: &str, max_changes: i32) -> Result<Vec<Txn>> {
    Ok(peek_counted(conn, slot, publication, max_changes).await?.0)
}

/// [`peek`], and whether it read everything the slot held: the server stops decoding once it has
/// produced `max_messages` messages (begin, relation, change and commit messages all count), so
/// fewer than that means nothing was left.
pub async fn peek_counted(conn: &mut PgConnection, slot: &str, publication: &str, max_messages: i32) -> Result<(Vec<Txn>, bool)> {
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, 'proto_version', '1', 'publication_names', $3)")
        .bind(slot)
        .bind(max_messages)
        .bind(publication)
        .fetch_all(&mut *conn)
        .await
        .map_err(q("read the changes of the replication slot"))?;
    let complete = rows.len() < usize::try_from(max_messages).unwrap_or(usize::MAX);
    let mut d = Decoder::default();
    let mut out = Vec::new();
    for (data,) in rows {
        if let Some(t) = d.feed(&data)? {
            out.push(t);
        }
    }
    Ok((out, complete))
}

/// The server's clock now, in microseconds since 2000-01-01 UTC (the unit of commit times).
pub async fn server_clock_us(conn: &mut PgConnection) -> Result<i64> {
    sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp() - '2000-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint")
        .fetch_one(&mut *conn)
        .await
        .map_err(q("read the server's clock"))
}

/// A digest of the database's schema as logical decoding cannot follow it (`pgoutput` carries
/// no DDL): every user table and partition with its kind, columns (name, type, not null,
/// default, identity, generation), constraints, indexes, triggers, and the sequences. Two equal
/// digests: no schema change between them that a replay would miss.
pub async fn schema_fingerprint(conn: &mut PgConnection) -> Result<String> {
    sqlx::query_scalar(
        "WITH rels AS (SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%')
         SELECT md5(coalesce(string_agg(x, E'\n' ORDER BY x), '')) FROM (
           SELECT format('rel %s %s', name, relkind) AS x FROM rels
           UNION ALL SELECT format('col %s %s %s %s %s %s %s', r.name, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity, a.attgenerated, pg_get_expr(d.adbin, d.adrelid))
             FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           UNION ALL SELECT format('con %s %s %s', r.name, k.conname, pg_get_constraintdef(k.oid)) FROM rels r JOIN pg_constraint k ON k.conrelid = r.oid
           UNION ALL SELECT format('idx %s', pg_get_indexdef(i.indexrelid)) FROM rels r JOIN pg_index i ON i.indrelid = r.oid
           UNION ALL SELECT format('trg %s %s', r.name, pg_get_triggerdef(t.oid)) FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
         ) s",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(q("read the schema's digest"))
}

/// The WAL position written and flushed now: a stream has every transaction committed before it
/// once its decoding has passed it.
pub async fn flush_lsn(conn: &mut PgConnection) -> Result<u64> {
    let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_flush_lsn()::text").fetch_one(&mut *conn).await.map_err(q("read the WAL position"))?;
    parse_lsn(&lsn)
}

/// Moves the slot past `lsn` (a transaction's end): the server may then recycle its WAL.
pub async fn advance(conn: &mut PgConnection, slot: &str, lsn: u64) -> Result<()> {
    sqlx::query("SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)").bind(slot).bind(format_lsn(lsn)).execute(&mut *conn).await.map_err(q("advance the replication slot"))?;
    Ok(())
}

pub fn parse_lsn(s: &str) -> Result<u64> {
    let (hi, lo) = s.split_once('/').ok_or_else(|| Error::new(ErrorCode::Internal, format!("not an LSN: {s}")))?;
    let p = |x: &str| u64::from_str_radix(x, 16).map_err(|_| Error::new(ErrorCode::Internal, format!("not an LSN: {s}")));
    Ok((p(hi)? << 32) | p(lo)?)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// A column's value in a change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Val {
    Null,
    /// A TOASTed value the update did not change (not sent): the row's old value stays.
    Unchanged,
    Text(String),
}

/// One change of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `schema.table`, as the server named it when the change was made.
    pub table: String,
    /// The table's columns at that moment, and which of them identify a row (the replica
    /// identity: the primary key, or every column for `REPLICA IDENTITY FULL`).
    pub columns: Vec<String>,
    pub key: Vec<String>,
    /// `I`nsert, `U`pdate, `D`elete, `T`runcate.
    pub op: char,
    /// The row's identity before the change (update of a key, delete): values at `columns`
    /// (`Null` where the old tuple sent only the key).
    pub old: Option<Vec<Val>>,
    /// The row after (insert, update).
    pub new: Option<Vec<Val>>,
    /// A truncate: the other tables truncated with it, and whether identities restarted.
    #[serde(default)]
    pub truncated: Vec<String>,
    #[serde(default)]
    pub restart_identity: bool,
}

/// A committed transaction, its changes in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub xid: u32,
    /// The commit record's LSN, and the end of the transaction (where a slot advances to).
    pub commit_lsn: u64,
    pub end_lsn: u64,
    /// Microseconds since 2000-01-01 UTC (PostgreSQL's epoch).
    pub commit_time_us: i64,
    pub changes: Vec<Change>,
}

impl Txn {
    /// The commit time as RFC 3339 (UTC).
    pub fn commit_time(&self) -> String {
        let epoch = chrono::DateTime::from_timestamp(946_684_800, 0).unwrap_or_default();
        (epoch + chrono::Duration::microseconds(self.commit_time_us)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }
}

#[derive(Debug, Clone)]
struct Relation {
    table: String,
    columns: Vec<String>,
    key: Vec<String>,
}

/// Decodes `pgoutput` messages (protocol version 1) into committed transactions.
#[derive(Default)]
pub struct Decoder {
    relations: HashMap<u32, Relation>,
    current: Option<Txn>,
}

struct Buf<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Buf<'a> {
    fn bad(&self, what: &str) -> Error {
        Error::new(ErrorCode::Internal, format!("an unreadable logical decoding message ({what} at byte {})", self.at))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.data.len()).ok_or_else(|| self.bad("cut short"))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().map_err(|_| self.bad("int16"))?))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().map_err(|_| self.bad("int32"))?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().map_err(|_| self.bad("int64"))?))
    }
    fn string(&mut self) -> Result<String> {
        let end = self.data[self.at..].iter().position(|b| *b == 0).ok_or_else(|| self.bad("string"))?;
        let s = String::from_utf8_lossy(&self.data[self.at..self.at + end]).into_owned();
        self.at += end + 1;
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Vec<Val>> {
        let n = usize::try_from(self.i16()?).map_err(|_| self.bad("column count"))?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Val::Null,
                b'u' => Val::Unchanged,
                b't' => {
                    let len = usize::try_from(self.i32()?).map_err(|_| self.bad("length"))?;
                    Val::Text(String::from_utf8_lossy(self.take(len)?).into_owned())
                }
                other => return Err(self.bad(&format!("column kind {:?}", other as char))),
            });
        }
        Ok(out)
    }
}

impl Decoder {
    /// A transaction has begun and not committed yet.
    pub fn in_transaction(&self) -> bool {
        self.current.is_some()
    }

    /// Feeds one message; returns the transaction its commit completes.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Txn>> {
        let mut b = Buf { data, at: 0 };
        match b.u8()? {
            b'B' => {
                let _final_lsn = b.i64()?;
                let commit_time_us = b.i64()?;
                let xid = b.i32()? as u32;
                self.current = Some(Txn { xid, commit_lsn: 0, end_lsn: 0, commit_time_us, changes: Vec::new() });
            }
            b'C' => {
                let _flags = b.u8()?;
                let commit_lsn = b.i64()? as u64;
                let end_lsn = b.i64()? as u64;
                let commit_time_us = b.i64()?;
                let mut t = self.current.take().ok_or_else(|| b.bad("a commit without its begin"))?;
                t.commit_lsn = commit_lsn;
                t.end_lsn = end_lsn;
                t.commit_time_us = commit_time_us;
                return Ok(Some(t));
            }
            b'R' => {
                let id = b.i32()? as u32;
                let schema = b.string()?;
                let name = b.string()?;
                let _identity = b.u8()?;
                let n = b.i16()?;
                let (mut columns, mut key) = (Vec::new(), Vec::new());
                for _ in 0..n {
                    let flags = b.u8()?;
                    let col = b.string()?;
                    let _type_oid = b.i32()?;
                    let _typmod = b.i32()?;
                    if flags & 1 == 1 {
                        key.push(col.clone());
                    }
                    columns.push(col);
                }
                let table = format!("{schema}.{name}");
                self.relations.insert(id, Relation { table, columns, key });
            }
            b'I' | b'U' | b'D' => {
                let op = data[0] as char;
                let rel = self.relation(b.i32()? as u32, &b)?;
                let (mut old, mut new) = (None, None);
                loop {
                    if b.at >= data.len() {
                        break;
                    }
                    match b.u8()? {
                        b'K' | b'O' => old = Some(b.tuple()?),
                        b'N' => new = Some(b.tuple()?),
                        other => return Err(b.bad(&format!("tuple kind {:?}", other as char))),
                    }
                }
                self.push(Change { table: rel.table, columns: rel.columns, key: rel.key, op, old, new, truncated: Vec::new(), restart_identity: false }, &b)?;
            }
            b'T' => {
                let n = b.i32()?;
                let options = b.u8()?;
                let mut tables = Vec::new();
                for _ in 0..n {
                    tables.push(self.relation(b.i32()? as u32, &b)?.table);
                }
                if let Some(first) = tables.first().cloned() {
                    let change = Change { table: first, columns: Vec::new(), key: Vec::new(), op: 'T', old: None, new: None, truncated: tables[1..].to_vec(), restart_identity: options & 2 == 2 };
                    self.push(change, &b)?;
                }
            }
            // Types, origins and logical messages carry nothing a replay needs.
            b'Y' | b'O' | b'M' => {}
            other => return Err(b.bad(&format!("message {:?}", other as char))),
        }
        Ok(None)
    }

    fn relation(&self, id: u32, b: &Buf) -> Result<Relation> {
        self.relations.get(&id).cloned().ok_or_else(|| b.bad(&format!("relation {id} before its description")))
    }

    fn push(&mut self, c: Change, b: &Buf) -> Result<()> {
        self.current.as_mut().ok_or_else(|| b.bad("a change outside a transaction"))?.changes.push(c);
        Ok(())
    }
}

/// Applies decoded transactions to a database holding the state they continue from, in commit
/// order, in one transaction (all or nothing); a transaction committed after `until_us` (when
/// given) and everything after it is left out. Values are bound as text and cast to the types the
/// target's catalog gives its columns; a row is found by its identity (the key, or the whole old
/// row for `REPLICA IDENTITY FULL`, one row of equal ones). Returns the changes applied.
pub async fn apply(conn: &mut PgConnection, txns: &[Txn], until_us: Option<i64>) -> Result<u64> {
    use sqlx::Connection as _;
    let mut tx = conn.begin().await.map_err(q("start applying the changes"))?;
    // As PostgreSQL's own replication applies changes: the target's triggers and foreign-key
    // actions do not fire (what they did at the source is in the changes already, e.g. the rows a
    // cascade deleted).
    sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *tx).await.map_err(|e| {
        Error::new(ErrorCode::PermissionDenied, format!("replaying changes needs a role that may set session_replication_role (a superuser): {e}")).caused_by(&e)
    })?;
    let chosen: Vec<&Change> = txns.iter().take_while(|t| until_us.is_none_or(|u| t.commit_time_us <= u)).flat_map(|t| t.changes.iter()).collect();
    let mut types: HashMap<String, HashMap<String, String>> = HashMap::new();
    for c in &chosen {
        if !types.contains_key(&c.table) {
            types.insert(c.table.clone(), target_columns(&mut tx, &c.table).await?);
        }
    }
    if chosen.iter().any(|c| c.op == 'T') {
        // A truncate orders the tables it names together: everything one change after another.
        for c in &chosen {
            apply_change(&mut tx, c, &types[&c.table]).await?;
        }
    } else {
        // Table by table (with the target's triggers and foreign keys off, the order between
        // tables does not matter; within a table it does): each table's net effect — a row's
        // last version, a deleted row once — in a few statements, so a row updated ten thousand
        // times is written once. A table whose changes have no net form (no key, a key updated)
        // is replayed change by change, and so is one whose net form meets a unique constraint
        // in an order the source never had (a swap of unique values between rows).
        let mut order: Vec<&str> = Vec::new();
        let mut by_table: HashMap<&str, Vec<&Change>> = HashMap::new();
        for c in &chosen {
            by_table.entry(c.table.as_str()).or_insert_with(|| {
                order.push(c.table.as_str());
                Vec::new()
            });
            by_table.get_mut(c.table.as_str()).expect("inserted").push(c);
        }
        for table in order {
            let changes = &by_table[table];
            let cols = &types[table];
            match net_effect(changes) {
                Some(net) => {
                    sqlx::query("SAVEPOINT safehold_net").execute(&mut *tx).await.map_err(q("set a savepoint"))?;
                    match apply_net(&mut tx, changes[0], &net, cols).await {
                        Ok(()) => {
                            sqlx::query("RELEASE SAVEPOINT safehold_net").execute(&mut *tx).await.map_err(q("release a savepoint"))?;
                        }
                        Err(e) if e.message.contains("duplicate key") => {
                            sqlx::query("ROLLBACK TO SAVEPOINT safehold_net").execute(&mut *tx).await.map_err(q("roll back to a savepoint"))?;
                            for c in changes {
                                apply_change(&mut tx, c, cols).await?;
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                None => {
                    for c in changes {
                        apply_change(&mut tx, c, cols).await?;
                    }
                }
            }
        }
    }
    tx.commit().await.map_err(q("commit the changes"))?;
    Ok(chosen.len() as u64)
}

/// The target's columns of `table` and their types.
async fn target_columns(tx: &mut PgConnection, table: &str) -> Result<HashMap<String, String>> {
    let (schema, name) = table.split_once('.').ok_or_else(|| Error::new(ErrorCode::Internal, format!("a change of {table} names no schema")))?;
    let cols: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(schema)
    .bind(name)
    .fetch_all(&mut *tx)
    .await
    .map_err(q("read the target's columns"))?;
    if cols.is_empty() {
        return Err(Error::not_found(format!(
            "the target has no table {table}: it was made after the base backup, or the target is not the database the changes continue"
        )));
    }
    Ok(cols.into_iter().collect())
}

/// One row's fate over a run of changes: whether it was there before the first of them, and its
/// last version (`None`: deleted).
#[derive(Debug)]
struct Fate {
    existed: bool,
    row: Option<Vec<Val>>,
}

/// A table's changes reduced to their net effect, rows in the order first met.
#[derive(Debug, Default)]
struct Net {
    keys: Vec<Vec<Val>>,
    fates: HashMap<Vec<Val>, Fate>,
}

/// The net effect of one table's changes, or `None` when they have none that keeps every check
/// (no key to follow rows by, a key updated, columns that changed, or a change that does not fit
/// the ones before it — replayed change by change, which says what is wrong).
fn net_effect(changes: &[&Change]) -> Option<Net> {
    let first = changes.first()?;
    if first.key.is_empty() {
        return None;
    }
    let at: Vec<usize> = first.key.iter().map(|k| first.columns.iter().position(|c| c == k)).collect::<Option<_>>()?;
    let key_of = |vals: &[Val]| -> Option<Vec<Val>> { at.iter().map(|&i| vals.get(i).cloned().filter(|v| matches!(v, Val::Text(_)))).collect() };
    let mut net = Net::default();
    for c in changes {
        if c.columns != first.columns || c.key != first.key {
            return None;
        }
        match c.op {
            'I' => {
                let row = c.new.clone()?;
                if row.contains(&Val::Unchanged) {
                    return None;
                }
                let key = key_of(&row)?;
                match net.fates.get_mut(&key) {
                    Some(f) if f.row.is_none() => f.row = Some(row),
                    Some(_) => return None,
                    None => {
                        net.keys.push(key.clone());
                        net.fates.insert(key, Fate { existed: false, row: Some(row) });
                    }
                }
            }
            'U' => {
                let new = c.new.clone()?;
                let key = key_of(&new)?;
                if c.old.as_ref().is_some_and(|o| key_of(o).as_ref() != Some(&key)) {
                    return None;
                }
                let fate = net.fates.entry(key.clone()).or_insert_with(|| {
                    net.keys.push(key.clone());
                    Fate { existed: true, row: Some(vec![Val::Unchanged; new.len()]) }
                });
                let before = fate.row.as_ref()?;
                // A TOASTed value the update did not send keeps the version before it.
                let merged = new.iter().zip(before).map(|(n, b)| if *n == Val::Unchanged { b.clone() } else { n.clone() }).collect();
                fate.row = Some(merged);
            }
            'D' => {
                let key = key_of(c.old.as_ref()?)?;
                let fate = net.fates.entry(key.clone()).or_insert_with(|| {
                    net.keys.push(key.clone());
                    Fate { existed: true, row: Some(Vec::new()) }
                });
                fate.row.as_ref()?;
                fate.row = None;
            }
            _ => return None,
        }
    }
    Some(net)
}

/// Binds at most this many values in one statement (PostgreSQL takes 65535).
const MAX_BINDS: usize = 30_000;

/// Writes a table's net effect: deletes, then updates (grouped by the columns they set), then
/// inserts, each a statement per batch whose count must be the batch's size. Deletes and updates
/// name the table `ONLY`: a change is of the table it names (the publication sends a partition's
/// changes as the partition's), never of the tables that inherit from it.
async fn apply_net(tx: &mut PgConnection, c: &Change, net: &Net, types: &HashMap<String, String>) -> Result<()> {
    let ty = |col: &str| -> Result<&String> { types.get(col).ok_or_else(|| Error::validation(format!("the target's {} has no column {col}: its schema differs from the source's at that change", c.table))) };
    let rel = rel_of(&c.table);
    let key_cols: Vec<&String> = c.key.iter().collect();
    let mut deletes: Vec<&Vec<Val>> = Vec::new();
    // Rows to update, grouped by the columns they set: (key, row).
    type Updates<'a> = std::collections::BTreeMap<Vec<usize>, Vec<(&'a Vec<Val>, &'a Vec<Val>)>>;
    let mut updates: Updates = std::collections::BTreeMap::new();
    let mut inserts: Vec<&Vec<Val>> = Vec::new();
    for key in &net.keys {
        let fate = &net.fates[key];
        match (&fate.row, fate.existed) {
            (None, true) => deletes.push(key),
            (None, false) => {}
            (Some(row), true) => {
                // The columns this row's changes gave a value; the key is where it was.
                let set: Vec<usize> = (0..row.len()).filter(|&i| row[i] != Val::Unchanged && !c.key.contains(&c.columns[i])).collect();
                updates.entry(set).or_default().push((key, row));
            }
            (Some(row), false) => inserts.push(row),
        }
    }
    let text = |v: &Val| match v {
        Val::Text(s) => Some(s.clone()),
        _ => None,
    };
    let run = async |tx: &mut PgConnection, sql: String, binds: Vec<Option<String>>, expected: usize, what: &str| -> Result<()> {
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for b in binds {
            query = query.bind(b);
        }
        let done = query.execute(&mut *tx).await.map_err(|e| Error::new(ErrorCode::Database, format!("applying the changes to {}: {e}", c.table)).caused_by(&e))?;
        if done.rows_affected() as usize != expected {
            return Err(Error::conflict(format!(
                "the changes of {} {what} {} rows where they changed {expected}: the target is not the state the changes continue from",
                c.table,
                done.rows_affected()
            )));
        }
        Ok(())
    };
    // VALUES rows of typed placeholders.
    let values = |rows: &[Vec<(Option<String>, &String)>], binds: &mut Vec<Option<String>>| -> String {
        rows.iter()
            .map(|r| {
                let cells: Vec<String> = r
                    .iter()
                    .map(|(v, t)| {
                        binds.push(v.clone());
                        format!("${}::text::{t}", binds.len())
                    })
                    .collect();
                format!("({})", cells.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key_names: Vec<String> = key_cols.iter().map(|k| qi(k)).collect();
    let key_match: String = key_cols.iter().map(|k| format!("t.{0} = v.{0}", qi(k))).collect::<Vec<_>>().join(" AND ");
    let key_types: Vec<&String> = key_cols.iter().map(|k| ty(k)).collect::<Result<_>>()?;
    let per = |width: usize| (MAX_BINDS / width.max(1)).max(1);
    for batch in deletes.chunks(per(key_cols.len())) {
        let rows: Vec<Vec<(Option<String>, &String)>> = batch.iter().map(|k| k.iter().zip(&key_types).map(|(v, t)| (text(v), *t)).collect()).collect();
        let mut binds = Vec::new();
        let vals = values(&rows, &mut binds);
        run(&mut *tx, format!("DELETE FROM ONLY {rel} AS t USING (VALUES {vals}) AS v({}) WHERE {key_match}", key_names.join(", ")), binds, batch.len(), "deleted").await?;
    }
    for (set, rows_of) in &updates {
        if set.is_empty() {
            // Only unchanged values were sent: the row must be there, nothing else changes.
            continue;
        }
        let set_types: Vec<&String> = set.iter().map(|&i| ty(&c.columns[i])).collect::<Result<_>>()?;
        let set_names: Vec<String> = set.iter().map(|&i| qi(&c.columns[i])).collect();
        for batch in rows_of.chunks(per(key_cols.len() + set.len())) {
            let rows: Vec<Vec<(Option<String>, &String)>> = batch
                .iter()
                .map(|(k, row)| k.iter().zip(&key_types).map(|(v, t)| (text(v), *t)).chain(set.iter().zip(&set_types).map(|(&i, t)| (text(&row[i]), *t))).collect())
                .collect();
            let mut binds = Vec::new();
            let vals = values(&rows, &mut binds);
            let assign: Vec<String> = set_names.iter().map(|n| format!("{n} = v.{n}")).collect();
            let sql = format!("UPDATE ONLY {rel} AS t SET {} FROM (VALUES {vals}) AS v({}) WHERE {key_match}", assign.join(", "), key_names.iter().chain(&set_names).cloned().collect::<Vec<_>>().join(", "));
            run(&mut *tx, sql, binds, batch.len(), "updated").await?;
        }
    }
    let col_types: Vec<&String> = c.columns.iter().map(|col| ty(col)).collect::<Result<_>>()?;
    let col_names: Vec<String> = c.columns.iter().map(|col| qi(col)).collect();
    for batch in inserts.chunks(per(c.columns.len())) {
        let rows: Vec<Vec<(Option<String>, &String)>> = batch.iter().map(|row| row.iter().zip(&col_types).map(|(v, t)| (text(v), *t)).collect()).collect();
        let mut binds = Vec::new();
        let vals = values(&rows, &mut binds);
        run(&mut *tx, format!("INSERT INTO {rel} ({}) OVERRIDING SYSTEM VALUE VALUES {vals}", col_names.join(", ")), binds, batch.len(), "inserted").await?;
    }
    Ok(())
}

/// `schema.table` quoted.
fn rel_of(table: &str) -> String {
    match table.split_once('.') {
        Some((s, t)) => format!("{}.{}", qi(s), qi(t)),
        None => qi(table),
    }
}

async fn apply_change(tx: &mut PgConnection, c: &Change, types: &HashMap<String, String>) -> Result<()> {
    let ty = |col: &str| -> Result<&String> { types.get(col).ok_or_else(|| Error::validation(format!("the target's {} has no column {col}: its schema differs from the source's at that change", c.table))) };
    let fail = |e: sqlx::Error| Error::new(ErrorCode::Database, format!("applying a change to {}: {e}", c.table)).caused_by(&e);
    let mut binds: Vec<Option<String>> = Vec::new();
    let mut bind = |v: Option<&str>, ty: &str| {
        binds.push(v.map(str::to_string));
        format!("${}::text::{ty}", binds.len())
    };
    // The row a change is about: its identity columns, equal to the old row's (or the new row's
    // when no old row was sent: the key did not change).
    let identity = |old: Option<&Vec<Val>>, new: Option<&Vec<Val>>, bind: &mut dyn FnMut(Option<&str>, &str) -> String| -> Result<String> {
        let full = c.key.is_empty();
        let cols: Vec<&String> = if full { c.columns.iter().collect() } else { c.key.iter().collect() };
        let mut conds = Vec::new();
        for col in cols {
            let i = c.columns.iter().position(|x| x == col).unwrap_or(0);
            let v = match old {
                Some(o) => o.get(i),
                None => new.and_then(|n| n.get(i)),
            };
            match v {
                Some(Val::Text(s)) => {
                    let ph = bind(Some(s), ty(col)?);
                    conds.push(format!("{} = {ph}", qi(col)));
                }
                Some(Val::Null) => conds.push(format!("{} IS NULL", qi(col))),
                _ => {}
            }
        }
        Ok(conds.join(" AND "))
    };
    let sql = match c.op {
        'I' => {
            let new = c.new.as_ref().ok_or_else(|| Error::new(ErrorCode::Internal, "an insert without its row"))?;
            let mut cols = Vec::new();
            let mut vals = Vec::new();
            for (col, v) in c.columns.iter().zip(new) {
                let t = ty(col)?.clone();
                cols.push(qi(col));
                vals.push(match v {
                    Val::Text(s) => bind(Some(s), &t),
                    _ => bind(None, &t),
                });
            }
            format!("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})", rel_of(&c.table), cols.join(", "), vals.join(", "))
        }
        'U' => {
            let new = c.new.as_ref().ok_or_else(|| Error::new(ErrorCode::Internal, "an update without its row"))?;
            let mut sets = Vec::new();
            for (col, v) in c.columns.iter().zip(new) {
                // A key the update did not change (no old row sent) is not set: an identity
                // column takes no value but its default.
                if c.old.is_none() && c.key.contains(col) {
                    continue;
                }
                let t = ty(col)?.clone();
                match v {
                    Val::Text(s) => sets.push(format!("{} = {}", qi(col), bind(Some(s), &t))),
                    Val::Null => sets.push(format!("{} = NULL", qi(col))),
                    Val::Unchanged => {}
                }
            }
            let cond = identity(c.old.as_ref(), Some(new), &mut bind)?;
            one_row(&c.table, &format!("UPDATE ONLY {} SET {}", rel_of(&c.table), sets.join(", ")), &cond)
        }
        'D' => {
            let cond = identity(c.old.as_ref(), None, &mut bind)?;
            one_row(&c.table, &format!("DELETE FROM ONLY {}", rel_of(&c.table)), &cond)
        }
        'T' => {
            let all: Vec<String> = std::iter::once(&c.table).chain(c.truncated.iter()).map(|t| rel_of(t)).collect();
            format!("TRUNCATE {}{}", all.join(", "), if c.restart_identity { " RESTART IDENTITY" } else { "" })
        }
        other => return Err(Error::new(ErrorCode::Internal, format!("an unknown change {other:?}"))),
    };
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for b in binds {
        query = query.bind(b);
    }
    let done = query.execute(&mut *tx).await.map_err(fail)?;
    if matches!(c.op, 'U' | 'D') && done.rows_affected() != 1 {
        return Err(Error::conflict(format!(
            "a change of {} found {} rows where it changed one: the target is not the state the changes continue from",
            c.table,
            done.rows_affected()
        )));
    }
    Ok(())
}

/// An update or delete of exactly one row: with a key, the row; without one (replica identity
/// full), one of the equal rows (by its ctid).
fn one_row(table: &str, head: &str, cond: &str) -> String {
    format!("{head} WHERE ctid = (SELECT ctid FROM ONLY {} WHERE {cond} LIMIT 1)", rel_of(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    #[test]
    fn messages_decode_into_a_committed_transaction() {
        let mut d = Decoder::default();
        let mut begin = vec![b'B'];
        begin.extend_from_slice(&100i64.to_be_bytes());
        begin.extend_from_slice(&5_000_000i64.to_be_bytes());
        begin.extend_from_slice(&777i32.to_be_bytes());
        assert!(d.feed(&begin).unwrap().is_none());
        let mut rel = vec![b'R'];
        rel.extend_from_slice(&16384i32.to_be_bytes());
        string(&mut rel, "public");
        string(&mut rel, "we\"ird");
        rel.push(b'd');
        rel.extend_from_slice(&2i16.to_be_bytes());
        for (flags, name) in [(1u8, "id"), (0, "body")] {
            rel.push(flags);
            string(&mut rel, name);
            rel.extend_from_slice(&25i32.to_be_bytes());
            rel.extend_from_slice(&(-1i32).to_be_bytes());
        }
        d.feed(&rel).unwrap();
        let mut upd = vec![b'U'];
        upd.extend_from_slice(&16384i32.to_be_bytes());
        upd.push(b'K');
        upd.extend_from_slice(&2i16.to_be_bytes());
        upd.push(b't');
        upd.extend_from_slice(&1i32.to_be_bytes());
        upd.push(b'1');
        upd.push(b'n');
        upd.push(b'N');
        upd.extend_from_slice(&2i16.to_be_bytes());
        upd.push(b't');
        upd.extend_from_slice(&1i32.to_be_bytes());
        upd.push(b'2');
        upd.push(b'u');
        d.feed(&upd).unwrap();
        let mut commit = vec![b'C', 0];
        commit.extend_from_slice(&100i64.to_be_bytes());
        commit.extend_from_slice(&120i64.to_be_bytes());
        commit.extend_from_slice(&5_000_000i64.to_be_bytes());
        let t = d.feed(&commit).unwrap().expect("a transaction");
        assert_eq!((t.xid, t.commit_lsn, t.end_lsn), (777, 100, 120));
        assert_eq!(t.commit_time(), "2000-01-01T00:00:05.000000Z");
        let c = &t.changes[0];
        assert_eq!((c.table.as_str(), c.op, c.key.clone()), ("public.we\"ird", 'U', vec!["id".to_string()]));
        assert_eq!(c.old, Some(vec![Val::Text("1".into()), Val::Null]));
        assert_eq!(c.new, Some(vec![Val::Text("2".into()), Val::Unchanged]));
        // Cut short: an error naming where, never a panic.
        assert!(d.feed(&upd[..9]).is_err());
        assert!(d.feed(b"Z").is_err());
    }

    #[test]
    fn lsns_read_and_write_as_postgresql_writes_them() {
        assert_eq!(parse_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert!(parse_lsn("nonsense").is_err());
        assert!(valid_name("safehold_1f2e") && !valid_name("Bad-Name") && !valid_name(""));
    }
}
