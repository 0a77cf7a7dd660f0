//! A seeded generator of multi-tenant PostgreSQL schemas and their data: the shapes real
//! applications have and our own fixtures did not. The same seed always gives the same schema,
//! so a failure is replayed with `SAFEHOLD_SCHEMA_SEED=<seed>`.
//!
//! What a schema may hold: one to three schemas with plain and quoted names (capitals, spaces,
//! dots, `#`, unicode, quotes, 63 bytes); a tenants table keyed by an identity, a UUID or text;
//! tables with the tenant column, tables reaching the tenant through one to three foreign keys
//! (nullable or not, composite, self-referencing, `ON DELETE CASCADE / SET NULL`, a cycle through
//! a nullable or deferrable key, the tenants table itself on a cycle), shared tables that tenant
//! rows refer to, rows a tenant owns one-to-one through a `NOT NULL UNIQUE` key without a tenant
//! column; keys of every shape (identity `ALWAYS` / `BY DEFAULT` with options, serial, UUID
//! default, text, composite, none); partitioned tables (range, list, hash, two levels, a default
//! partition) keyed by identities; unique constraints beyond the key (per tenant and global),
//! checks, generated columns, defaults calling functions, triggers, RLS policies, indexes
//! (partial, expression, storage parameters, `CLUSTER ON`), comments, storage parameters, enum,
//! domain, composite and array types, `json`, `xml`, `point`, `box`, `citext`, numerics with
//! trailing zeros, floats with NaN and infinities, TOASTed values, NULLs, control characters and
//! `\.` lines; views whose `GROUP BY` relies on a primary key, a rule, a materialized view.

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// SplitMix64: small, fast and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    pub fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            let _ = write!(s, "{:016x}", self.next());
        }
        s.truncate(n);
        s
    }
    pub fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
    }
}

pub fn qi(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn ql(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A literal that may hold any character but NUL: `E'…'` with escapes.
pub fn qe(s: &str) -> String {
    let mut out = String::from("E'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A column type and how its values are made.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Int,
    BigInt,
    SmallInt,
    Numeric,
    Float8,
    Real,
    Text,
    Varchar,
    Bool,
    Date,
    Timestamptz,
    Interval,
    Bytea,
    Uuid,
    Jsonb,
    Json,
    Xml,
    Point,
    Box,
    Citext,
    Inet,
    IntArray,
    TextArray,
    Enum(String),
    Domain(String),
    Composite(String),
}

impl Ty {
    fn sql(&self) -> String {
        match self {
            Ty::Int => "integer".into(),
            Ty::BigInt => "bigint".into(),
            Ty::SmallInt => "smallint".into(),
            Ty::Numeric => "numeric".into(),
            Ty::Float8 => "double precision".into(),
            Ty::Real => "real".into(),
            Ty::Text => "text".into(),
            Ty::Varchar => "character varying(300)".into(),
            Ty::Bool => "boolean".into(),
            Ty::Date => "date".into(),
            Ty::Timestamptz => "timestamp with time zone".into(),
            Ty::Interval => "interval".into(),
            Ty::Bytea => "bytea".into(),
            Ty::Uuid => "uuid".into(),
            Ty::Jsonb => "jsonb".into(),
            Ty::Json => "json".into(),
            Ty::Xml => "xml".into(),
            Ty::Point => "point".into(),
            Ty::Box => "box".into(),
            Ty::Citext => "citext".into(),
            Ty::Inet => "inet".into(),
            Ty::IntArray => "integer[]".into(),
            Ty::TextArray => "text[]".into(),
            Ty::Enum(t) | Ty::Domain(t) | Ty::Composite(t) => t.clone(),
        }
    }
}

/// How a table reaches its tenant.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// The tenants table itself.
    Tenants,
    /// Its own tenant column.
    Column,
    /// Through a foreign key to a table that reaches the tenant (its index in `tables`).
    Via { parent: usize, nullable: bool },
    /// Pointed at one-to-one (`NOT NULL UNIQUE`) by a tenant table, with no link of its own.
    Owned { by: usize },
    /// No tenant: rows everyone shares.
    Shared,
}

/// How a table's key is made.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Identity { always: bool, start: i64, step: i64 },
    Serial,
    Uuid,
    Text,
    /// The tenant column and a text code.
    TenantCode,
    None,
}

#[derive(Debug, Clone)]
pub struct Col {
    pub name: String,
    pub ty: Ty,
    pub not_null: bool,
}

#[derive(Debug, Clone)]
pub struct Fk {
    pub cols: Vec<String>,
    pub parent: usize,
    pub parent_cols: Vec<String>,
    pub deferrable: bool,
    pub on_delete: &'static str,
    /// Added after the data (the tenants table's cycle, a back edge).
    pub late: bool,
    /// No foreign key declares it (common in Rails and Django schemas): the properties declare
    /// it to the engine.
    pub undeclared: bool,
}

#[derive(Debug, Clone)]
pub enum Partitioning {
    Range,
    List,
    Hash,
    /// Range, and one of its partitions listed again.
    Nested,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub link: Link,
    pub key: Key,
    /// The key's columns (empty: no primary key).
    pub key_cols: Vec<String>,
    pub cols: Vec<Col>,
    pub fks: Vec<Fk>,
    pub partitioning: Option<Partitioning>,
    /// Unique over the column alone: a copy into the same database makes each non-NULL value twice.
    pub global_unique: Vec<String>,
    /// Rows (each the values of `cols` as SQL literals), with the tenant they belong to.
    pub rows: Vec<(Option<usize>, Vec<String>)>,
    /// Whether a copy makes the key anew (identity, serial, UUID default).
    pub renewed_key: bool,
    /// When the table was found linked to the tenant (its links count only to tables found
    /// before it).
    pub found: usize,
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", qi(&self.schema), qi(&self.name))
    }
    fn col(&self, name: &str) -> Option<&Col> {
        self.cols.iter().find(|c| c.name == name)
    }
}

/// One generated schema: the statements that make it, its data, and what the properties need
/// to know about it.
#[derive(Debug, Clone)]
pub struct Schema {
    pub seed: u64,
    /// Before the data: types, tables, keys, indexes.
    pub ddl: Vec<String>,
    pub data: Vec<String>,
    /// Each table's INSERT (a part of `data`), by table.
    pub inserts: Vec<(usize, String)>,
    /// After the data: foreign keys.
    pub post: Vec<String>,
    pub tenants_table: String,
    pub tenant_column: String,
    pub tenant_ids: Vec<String>,
    pub tables: Vec<Table>,
    pub features: BTreeSet<&'static str>,
    /// Needs the `citext` extension.
    pub extensions: Vec<&'static str>,
    /// Columns a trigger counts in (their values start at 0).
    pub counters: BTreeSet<String>,
}

impl Schema {
    pub fn tenants(&self) -> &Table {
        self.tables.iter().find(|t| t.link == Link::Tenants).expect("a tenants table")
    }
    pub fn describe(&self) -> String {
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|t| {
                let link = match &t.link {
                    Link::Tenants => "tenants".to_string(),
                    Link::Column => "column".to_string(),
                    Link::Via { parent, nullable } => format!("via {}{}", self.tables[*parent].name, if *nullable { "?" } else { "" }),
                    Link::Owned { by } => format!("owned by {}", self.tables[*by].name),
                    Link::Shared => "shared".to_string(),
                };
                format!("{}.{} [{link}; {:?}{}]", t.schema, t.name, t.key, t.partitioning.as_ref().map(|p| format!("; {p:?}")).unwrap_or_default())
            })
            .collect();
        format!("seed {}: {} tables: {}", self.seed, self.tables.len(), tables.join(", "))
    }
}

/// What the generator may use (the properties turn some off where an operation refuses them).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub max_tables: usize,
    pub rows_per_parent: i64,
    pub tenants: usize,
    pub hostile_names: bool,
    pub partitions: bool,
    pub cycles: bool,
    pub global_uniques: bool,
    pub citext: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_tables: 14, rows_per_parent: 3, tenants: 3, hostile_names: true, partitions: true, cycles: true, global_uniques: true, citext: true }
    }
}

struct Gen {
    rng: Rng,
    opts: Options,
    used: BTreeSet<String>,
    s: Schema,
    enums: Vec<(String, Vec<String>)>,
    domains: Vec<String>,
    composites: Vec<String>,
    functions: Vec<String>,
}

/// The schema of `seed`.
pub fn generate(seed: u64, opts: Options) -> Schema {
    let mut g = Gen {
        rng: Rng::new(seed),
        opts,
        used: BTreeSet::new(),
        s: Schema {
            seed,
            ddl: Vec::new(),
            data: Vec::new(),
            inserts: Vec::new(),
            post: Vec::new(),
            tenants_table: String::new(),
            tenant_column: String::new(),
            tenant_ids: Vec::new(),
            tables: Vec::new(),
            features: BTreeSet::new(),
            extensions: Vec::new(),
            counters: BTreeSet::new(),
        },
        enums: Vec::new(),
        domains: Vec::new(),
        composites: Vec::new(),
        functions: Vec::new(),
    };
    g.run();
    g.s
}

const WORDS: &[&str] = &[
    "projects", "notes", "invoices", "lines", "users", "events", "tasks", "files", "comments", "orders", "payments", "members", "labels", "tokens", "settings",
    "reports", "items", "charges", "plans", "regions", "audits", "messages", "threads", "documents", "claims",
];

impl Gen {
    /// A new name, unique in the whole schema (so bare names never collide either).
    fn name(&mut self, base: &str) -> String {
        for attempt in 0.. {
            let mut n = if self.opts.hostile_names && self.rng.chance(0.35) {
                match self.rng.below(9) {
                    0 => {
                        let mut c = base.chars();
                        c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
                    }
                    1 => format!("{base} list"),
                    2 => format!("{base}.v2"),
                    3 => format!("{base}#keys"),
                    4 => format!("{base}_é日"),
                    5 => {
                        let mut s = format!("{base}_");
                        while s.len() < 63 {
                            s.push('x');
                        }
                        s
                    }
                    6 => format!("we\"{base}"),
                    7 => format!("{base}$1"),
                    _ => base.to_uppercase(),
                }
            } else {
                base.to_string()
            };
            if attempt > 0 {
                n = format!("{}{}", n.chars().take(55).collect::<String>(), attempt);
            }
            while n.len() > 63 {
                n.pop();
            }
            if n.contains('.') || n.contains('#') || n.contains('"') || !n.is_ascii() || n.chars().any(|c| c.is_ascii_uppercase()) || n.contains(' ') {
                self.s.features.insert("quoted names");
            }
            if self.used.insert(n.to_lowercase()) {
                return n;
            }
        }
        unreachable!()
    }

    fn run(&mut self) {
        let g = self;
        // Schemas.
        let n_schemas = 1 + g.rng.below(3);
        let mut schemas = vec!["public".to_string()];
        for i in 1..n_schemas {
            let n = g.name(if i == 1 { "app" } else { "billing" });
            g.s.ddl.push(format!("CREATE SCHEMA {}", qi(&n)));
            schemas.push(n);
        }
        if schemas.len() > 1 {
            g.s.features.insert("several schemas");
        }
        if g.opts.citext && g.rng.chance(0.4) {
            g.s.ddl.push("CREATE EXTENSION IF NOT EXISTS citext".into());
            g.s.extensions.push("citext");
        }
        // Types.
        for _ in 0..g.rng.below(3) {
            let n = g.name("status");
            let schema = g.rng.pick(&schemas).clone();
            let labels: Vec<String> = ["new", "open", "Done", "won't fix", "a,b"].iter().take(2 + g.rng.below(4)).map(|s| s.to_string()).collect();
            let full = format!("{}.{}", qi(&schema), qi(&n));
            g.s.ddl.push(format!("CREATE TYPE {full} AS ENUM ({})", labels.iter().map(|l| ql(l)).collect::<Vec<_>>().join(", ")));
            g.enums.push((full, labels));
            g.s.features.insert("enum");
        }
        if g.rng.chance(0.5) {
            let n = g.name("positive");
            let full = format!("{}.{}", qi(g.rng.pick(&schemas).as_str()), qi(&n));
            g.s.ddl.push(format!("CREATE DOMAIN {full} AS integer CHECK (VALUE >= 0)"));
            g.domains.push(full);
            g.s.features.insert("domain");
        }
        if g.rng.chance(0.4) {
            let n = g.name("money_amount");
            let full = format!("{}.{}", qi(g.rng.pick(&schemas).as_str()), qi(&n));
            g.s.ddl.push(format!("CREATE TYPE {full} AS (amount numeric, currency text)"));
            g.composites.push(full);
            g.s.features.insert("composite type");
        }
        if g.rng.chance(0.5) {
            let n = g.name("default_label");
            let full = format!("{}.{}", qi(g.rng.pick(&schemas).as_str()), qi(&n));
            g.s.ddl.push(format!("CREATE FUNCTION {full}() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'label-' || 42 $$"));
            g.functions.push(full);
            g.s.features.insert("function in a default");
        }

        // The tenants table.
        let tenants_schema = g.rng.pick(&schemas).clone();
        let base = *g.rng.pick(&["tenants", "organizations", "accounts", "workspaces"]);
        let tenants_name = g.name(base);
        let tenant_column = {
            let base = match tenants_name.to_lowercase().as_str() {
                n if n.starts_with("organizations") => "organization_id",
                n if n.starts_with("accounts") => "account_id",
                n if n.starts_with("workspaces") => "workspace_id",
                _ => "tenant_id",
            };
            if g.opts.hostile_names && g.rng.chance(0.2) {
                g.s.features.insert("quoted tenant column");
                format!("{} Id", base.trim_end_matches("_id"))
            } else {
                base.to_string()
            }
        };
        g.s.tenants_table = tenants_name.clone();
        g.s.tenant_column = tenant_column.clone();
        let tkey = match g.rng.below(5) {
            0 | 1 => Key::Identity { always: g.rng.chance(0.5), start: *g.rng.pick(&[1, 1000, 50]), step: *g.rng.pick(&[1, 10, 3]) },
            2 | 3 => Key::Uuid,
            _ => Key::Text,
        };
        let mut tenants = Table {
            schema: tenants_schema,
            name: tenants_name,
            link: Link::Tenants,
            key: tkey.clone(),
            key_cols: vec!["id".into()],
            cols: vec![Col { name: "id".into(), ty: key_ty(&tkey), not_null: true }, Col { name: "name".into(), ty: Ty::Text, not_null: true }],
            fks: vec![],
            partitioning: None,
            global_unique: vec!["name".into()],
            rows: vec![],
            renewed_key: matches!(tkey, Key::Identity { .. } | Key::Uuid),
            found: 0,
        };
        g.extra_cols(&mut tenants, 2);
        g.s.tables.push(tenants);

        // Other tables, each linked to one made before it.
        let n_tables = 2 + g.rng.below(g.opts.max_tables.saturating_sub(2).max(1));
        for _ in 0..n_tables {
            g.table(&schemas, &tenant_column);
        }
        // A cycle: the tenants table points (nullable) at one of its tenant's rows.
        if g.opts.cycles && g.rng.chance(0.35) {
            let candidates: Vec<usize> = (1..g.s.tables.len()).filter(|&i| matches!(g.s.tables[i].link, Link::Column | Link::Via { .. }) && g.s.tables[i].partitioning.is_none() && g.s.tables[i].key_cols.len() == 1).collect();
            if !candidates.is_empty() {
                let target = *g.rng.pick(&candidates);
                let kc = g.s.tables[target].key_cols[0].clone();
                let ty = g.s.tables[target].col(&kc).map(|c| ref_ty(&c.ty)).unwrap_or(Ty::BigInt);
                let col = g.name("default_ref");
                let deferrable = g.rng.chance(0.5);
                g.s.tables[0].cols.push(Col { name: col.clone(), ty, not_null: false });
                g.s.tables[0].fks.push(Fk { cols: vec![col], parent: target, parent_cols: vec![kc], deferrable, on_delete: "NO ACTION", late: true, undeclared: false });
                g.s.features.insert(if deferrable { "tenants table on a deferrable cycle" } else { "tenants table on a nullable cycle" });
            }
        }
        g.emit_ddl();
        g.data();
    }

    fn extra_cols(&mut self, t: &mut Table, max: usize) {
        for _ in 0..self.rng.below(max + 1) {
            let ty = self.ty();
            let name = self.name(match ty {
                Ty::Text | Ty::Varchar | Ty::Citext => "title",
                Ty::Jsonb | Ty::Json => "payload",
                Ty::Numeric | Ty::Float8 | Ty::Real => "amount",
                Ty::Timestamptz | Ty::Date => "happened_at",
                _ => "attr",
            });
            let not_null = self.rng.chance(0.15) && !matches!(ty, Ty::Domain(_));
            t.cols.push(Col { name, ty, not_null });
        }
    }

    fn ty(&mut self) -> Ty {
        loop {
            let t = match self.rng.below(27) {
                0 => Ty::Int,
                1 => Ty::BigInt,
                2 => Ty::SmallInt,
                3 => Ty::Numeric,
                4 => Ty::Float8,
                5 => Ty::Real,
                6 | 7 => Ty::Text,
                8 => Ty::Varchar,
                9 => Ty::Bool,
                10 => Ty::Date,
                11 => Ty::Timestamptz,
                12 => Ty::Interval,
                13 => Ty::Bytea,
                14 => Ty::Uuid,
                15 => Ty::Jsonb,
                16 => Ty::Json,
                17 => Ty::Xml,
                18 => Ty::Point,
                19 => Ty::Box,
                20 if self.s.extensions.contains(&"citext") => Ty::Citext,
                21 => Ty::Inet,
                22 => Ty::IntArray,
                23 => Ty::TextArray,
                24 if !self.enums.is_empty() => Ty::Enum(self.rng.pick(&self.enums).0.clone()),
                25 if !self.domains.is_empty() => Ty::Domain(self.rng.pick(&self.domains).clone()),
                26 if !self.composites.is_empty() => Ty::Composite(self.rng.pick(&self.composites).clone()),
                _ => continue,
            };
            self.s.features.insert(match &t {
                Ty::Json => "json",
                Ty::Xml => "xml",
                Ty::Point => "point",
                Ty::Box => "box",
                Ty::Citext => "citext",
                Ty::Numeric => "numeric",
                Ty::Float8 | Ty::Real => "float",
                Ty::IntArray | Ty::TextArray => "arrays",
                _ => "plain types",
            });
            return t;
        }
    }

    fn table(&mut self, schemas: &[String], tenant_column: &str) {
        let idx = self.s.tables.len();
        let schema = self.rng.pick(schemas).clone();
        let base = *self.rng.pick(WORDS);
        let name = if self.rng.chance(0.1) { self.name(&format!("{base}_log")) } else { self.name(base) };
        // The link.
        let reachers: Vec<usize> = (0..idx).filter(|&i| matches!(self.s.tables[i].link, Link::Tenants | Link::Column | Link::Via { .. }) && !self.s.tables[i].key_cols.is_empty()).collect();
        let shared: Vec<usize> = (0..idx).filter(|&i| self.s.tables[i].link == Link::Shared).collect();
        let link = match self.rng.below(10) {
            0..=3 => Link::Column,
            4..=7 => {
                // Prefer deeper parents, for paths of two and three hops.
                let parent = if self.rng.chance(0.6) { *reachers.last().unwrap_or(&0) } else { *self.rng.pick(&reachers) };
                let nullable = self.rng.chance(0.2);
                Link::Via { parent, nullable }
            }
            8 => Link::Shared,
            _ => {
                let owners: Vec<usize> = (1..idx).filter(|&i| matches!(self.s.tables[i].link, Link::Column | Link::Via { nullable: false, .. }) && self.s.tables[i].partitioning.is_none()).collect();
                match owners.first() {
                    Some(_) => Link::Owned { by: *self.rng.pick(&owners) },
                    None => Link::Column,
                }
            }
        };
        let partitioning = if self.opts.partitions && link == Link::Column && self.rng.chance(0.25) {
            Some(match self.rng.below(4) {
                0 => Partitioning::Range,
                1 => Partitioning::List,
                2 => Partitioning::Hash,
                _ => Partitioning::Nested,
            })
        } else {
            None
        };
        let mut key = match self.rng.below(8) {
            0 | 1 => Key::Identity { always: self.rng.chance(0.5), start: *self.rng.pick(&[1, 1000, 7]), step: *self.rng.pick(&[1, 10, 2]) },
            2 => Key::Serial,
            3 | 4 => Key::Uuid,
            5 => Key::Text,
            6 if link == Link::Column => Key::TenantCode,
            7 if matches!(link, Link::Via { .. } | Link::Column) => Key::None,
            _ => Key::Serial,
        };
        if partitioning.is_some() || matches!(link, Link::Owned { .. }) {
            key = Key::Identity { always: self.rng.chance(0.5), start: 1, step: *self.rng.pick(&[1, 10]) };
        }
        let mut t = Table {
            schema,
            name,
            link: link.clone(),
            key: key.clone(),
            key_cols: vec![],
            cols: vec![],
            fks: vec![],
            partitioning: partitioning.clone(),
            global_unique: vec![],
            rows: vec![],
            renewed_key: matches!(key, Key::Identity { .. } | Key::Serial | Key::Uuid),
            found: idx,
        };
        match &key {
            Key::None => self.s.features.insert("no key"),
            Key::Text => self.s.features.insert("text key"),
            Key::TenantCode => self.s.features.insert("composite key"),
            Key::Identity { start, step, .. } if *start != 1 || *step != 1 => self.s.features.insert("identity options"),
            _ => self.s.features.insert("generated key"),
        };
        let tenants_key_ty = self.s.tables[0].col("id").map(|c| ref_ty(&c.ty)).unwrap_or(Ty::BigInt);
        match key {
            Key::TenantCode => {
                t.cols.push(Col { name: tenant_column.into(), ty: tenants_key_ty.clone(), not_null: true });
                t.cols.push(Col { name: "code".into(), ty: Ty::Text, not_null: true });
                t.key_cols = vec![tenant_column.into(), "code".into()];
            }
            Key::None => {}
            _ => {
                t.cols.push(Col { name: "id".into(), ty: key_ty(&key), not_null: true });
                t.key_cols = vec!["id".into()];
            }
        }
        if matches!(link, Link::Column) && t.col(tenant_column).is_none() {
            t.cols.push(Col { name: tenant_column.into(), ty: tenants_key_ty.clone(), not_null: self.rng.chance(0.9) });
        }
        if link == Link::Column {
            let declared = self.rng.chance(0.85);
            if declared {
                t.fks.push(Fk {
                    cols: vec![tenant_column.into()],
                    parent: 0,
                    parent_cols: vec!["id".into()],
                    deferrable: false,
                    on_delete: pick_action(&mut self.rng, &["NO ACTION", "CASCADE"]),
                    late: false,
                    undeclared: false,
                });
            } else {
                self.s.features.insert("tenant column without a foreign key");
            }
        }
        if let Some(p) = &partitioning {
            t.cols.push(Col { name: "created_at".into(), ty: Ty::Date, not_null: true });
            if matches!(p, Partitioning::List | Partitioning::Nested) {
                t.cols.push(Col { name: "kind".into(), ty: Ty::Text, not_null: true });
            }
            match p {
                Partitioning::Range => t.key_cols.push("created_at".into()),
                Partitioning::Nested => t.key_cols.extend(["created_at".to_string(), "kind".to_string()]),
                Partitioning::List => t.key_cols.push("kind".into()),
                Partitioning::Hash => {}
            }
            self.s.features.insert(match p {
                Partitioning::Range => "range partitions",
                Partitioning::List => "list partitions",
                Partitioning::Hash => "hash partitions",
                Partitioning::Nested => "nested partitions",
            });
        }
        // The foreign key that links it.
        match &link {
            Link::Via { parent, nullable } => {
                let p = &self.s.tables[*parent];
                let (pcols, ptys): (Vec<String>, Vec<Ty>) = p.key_cols.iter().map(|c| (c.clone(), p.col(c).map(|x| ref_ty(&x.ty)).unwrap_or(Ty::BigInt))).unzip();
                if pcols.is_empty() {
                    // A parent without a key cannot be referred to: fall back to the tenant column.
                    t.link = Link::Column;
                    if t.col(tenant_column).is_none() {
                        t.cols.push(Col { name: tenant_column.into(), ty: tenants_key_ty, not_null: true });
                    }
                } else {
                    let pname = p.name.clone();
                    let stem: String = pname.chars().filter(|c| c.is_alphanumeric()).take(20).collect::<String>().to_lowercase();
                    let mut cols = Vec::new();
                    for (c, ty) in pcols.iter().zip(ptys) {
                        let n = self.name(&format!("{stem}_{}", c.to_lowercase().replace(' ', "_")));
                        t.cols.push(Col { name: n.clone(), ty, not_null: !nullable });
                        cols.push(n);
                    }
                    if pcols.len() > 1 {
                        self.s.features.insert("composite foreign key");
                    }
                    if *nullable {
                        self.s.features.insert("nullable link");
                    }
                    let deferrable = self.rng.chance(0.15);
                    let on_delete = if *nullable { *self.rng.pick(&["NO ACTION", "SET NULL", "CASCADE"]) } else { *self.rng.pick(&["NO ACTION", "CASCADE"]) };
                    // Sometimes no foreign key declares the link (one column to a plain key).
                    let undeclared = pcols.len() == 1 && self.rng.chance(0.15);
                    if undeclared {
                        self.s.features.insert("reference no key declares");
                    }
                    t.fks.push(Fk { cols, parent: *parent, parent_cols: pcols, deferrable, on_delete, late: false, undeclared });
                    if let Link::Via { parent, .. } = &link {
                        if let Link::Via { parent: gp, .. } = &self.s.tables[*parent].link {
                            if matches!(self.s.tables[*gp].link, Link::Via { .. }) {
                                self.s.features.insert("three hops");
                            } else {
                                self.s.features.insert("two hops");
                            }
                        }
                    }
                }
            }
            Link::Owned { by } => {
                // The owner points at it: NOT NULL UNIQUE, added to the owner.
                let by = *by;
                let col = self.name(&format!("{}_id", t.name.chars().filter(|c| c.is_ascii_alphanumeric()).take(20).collect::<String>().to_lowercase()));
                self.s.tables[by].cols.push(Col { name: col.clone(), ty: Ty::BigInt, not_null: true });
                self.s.tables[by].fks.push(Fk { cols: vec![col.clone()], parent: idx, parent_cols: vec!["id".into()], deferrable: false, on_delete: "NO ACTION", late: false, undeclared: false });
                self.s.tables[by].global_unique.push(format!("!{col}"));
                self.s.features.insert("rows owned one-to-one");
            }
            _ => {}
        }
        // A self reference.
        if t.key_cols.len() == 1 && t.partitioning.is_none() && self.rng.chance(0.2) {
            let kc = t.key_cols[0].clone();
            let ty = t.col(&kc).map(|c| ref_ty(&c.ty)).unwrap_or(Ty::BigInt);
            let n = self.name("parent_ref");
            t.cols.push(Col { name: n.clone(), ty, not_null: false });
            t.fks.push(Fk { cols: vec![n], parent: idx, parent_cols: vec![kc], deferrable: self.rng.chance(0.3), on_delete: pick_action(&mut self.rng, &["NO ACTION", "SET NULL", "CASCADE"]), late: false, undeclared: false });
            self.s.features.insert("self reference");
        }
        // A reference to a shared table.
        if !shared.is_empty() && link != Link::Shared && self.rng.chance(0.5) {
            let sidx = *self.rng.pick(&shared);
            let sp = &self.s.tables[sidx];
            if sp.key_cols.len() == 1 {
                let kc = sp.key_cols[0].clone();
                let ty = sp.col(&kc).map(|c| ref_ty(&c.ty)).unwrap_or(Ty::BigInt);
                let n = self.name("shared_ref");
                t.cols.push(Col { name: n.clone(), ty, not_null: false });
                t.fks.push(Fk { cols: vec![n], parent: sidx, parent_cols: vec![kc], deferrable: false, on_delete: "SET NULL", late: false, undeclared: false });
                self.s.features.insert("reference to a shared table");
            }
        }
        // A back edge: an earlier tenant table pointing (nullable) at this one.
        if self.opts.cycles && matches!(link, Link::Via { .. }) && t.key_cols.len() == 1 && t.partitioning.is_none() && self.rng.chance(0.2) {
            if let Link::Via { parent, .. } = &link {
                let parent = *parent;
                if self.s.tables[parent].partitioning.is_none() && parent != 0 {
                    let kc = t.key_cols[0].clone();
                    let ty = t.col(&kc).map(|c| ref_ty(&c.ty)).unwrap_or(Ty::BigInt);
                    let n = self.name("latest_ref");
                    let deferrable = self.rng.chance(0.5);
                    self.s.tables[parent].cols.push(Col { name: n.clone(), ty, not_null: false });
                    self.s.tables[parent].fks.push(Fk { cols: vec![n], parent: idx, parent_cols: vec![kc], deferrable, on_delete: "SET NULL", late: true, undeclared: false });
                    self.s.features.insert(if deferrable { "deferrable cycle" } else { "nullable cycle" });
                }
            }
        }
        self.extra_cols(&mut t, 4);
        if link != Link::Shared && self.rng.chance(0.3) {
            t.cols.push(Col { name: "body".into(), ty: Ty::Text, not_null: false });
            self.s.features.insert("TOASTed values");
        }
        // Unique beyond the key.
        if t.partitioning.is_none() && link != Link::Shared && self.rng.chance(0.3) {
            let global = link != Link::Column || self.rng.chance(0.5);
            if !global || self.opts.global_uniques {
                let n = self.name("slug");
                t.cols.push(Col { name: n.clone(), ty: Ty::Text, not_null: false });
                if global {
                    t.global_unique.push(n);
                    self.s.features.insert("global unique");
                } else {
                    t.global_unique.push(format!("+{n}"));
                    self.s.features.insert("unique per tenant");
                }
            }
        }
        self.s.tables.push(t);
    }

    /// CREATE statements for everything.
    fn emit_ddl(&mut self) {
        let tables = self.s.tables.clone();
        let tc = self.s.tenant_column.clone();
        let mut late = Vec::new();
        for (i, t) in tables.iter().enumerate() {
            let mut defs = Vec::new();
            for c in &t.cols {
                let mut d = format!("{} {}", qi(&c.name), c.ty.sql());
                let is_key = t.key_cols.first() == Some(&c.name);
                if is_key {
                    match &t.key {
                        Key::Identity { always, start, step } => {
                            let _ = write!(d, " GENERATED {} AS IDENTITY (START WITH {start} INCREMENT BY {step})", if *always { "ALWAYS" } else { "BY DEFAULT" });
                        }
                        Key::Serial => d = format!("{} {}", qi(&c.name), if c.ty == Ty::BigInt { "bigserial" } else { "serial" }),
                        Key::Uuid => d.push_str(" DEFAULT gen_random_uuid()"),
                        _ => {}
                    }
                }
                if c.not_null && !matches!((&t.key, is_key), (Key::Serial, true)) {
                    d.push_str(" NOT NULL");
                }
                if c.name == "title" || c.name.starts_with("title") {
                    if let Some(f) = self.functions.first() {
                        let _ = write!(d, " DEFAULT {f}()");
                    }
                }
                defs.push(d);
            }
            if let Some(g) = t.cols.iter().find(|c| matches!(c.ty, Ty::SmallInt)) {
                let n = self.name("doubled");
                defs.push(format!("{} bigint GENERATED ALWAYS AS (({}::bigint) * 2) STORED", qi(&n), qi(&g.name)));
                self.s.features.insert("generated column");
            }
            if !t.key_cols.is_empty() {
                defs.push(format!("PRIMARY KEY ({})", t.key_cols.iter().map(|c| qi(c)).collect::<Vec<_>>().join(", ")));
            }
            let mut with = Vec::new();
            if t.partitioning.is_none() && self.rng.chance(0.2) {
                with.push("fillfactor=70");
                with.push("autovacuum_vacuum_scale_factor=0.05");
                if self.rng.chance(0.5) {
                    with.push("toast.autovacuum_enabled=false");
                }
                self.s.features.insert("storage parameters");
            }
            let mut sql = format!("CREATE TABLE {} (\n  {}\n)", t.qualified(), defs.join(",\n  "));
            if let Some(p) = &t.partitioning {
                sql.push_str(match p {
                    Partitioning::Range | Partitioning::Nested => " PARTITION BY RANGE (created_at)",
                    Partitioning::List => " PARTITION BY LIST (kind)",
                    Partitioning::Hash => " PARTITION BY HASH (id)",
                });
            }
            if !with.is_empty() {
                let _ = write!(sql, " WITH ({})", with.join(", "));
            }
            self.s.ddl.push(sql);
            if let Some(p) = &t.partitioning {
                let parts = self.partitions(t, p);
                self.s.ddl.extend(parts);
            }
            for u in &t.global_unique {
                if let Some(c) = u.strip_prefix('!') {
                    self.s.ddl.push(format!("ALTER TABLE {} ADD UNIQUE ({})", t.qualified(), qi(c)));
                    continue;
                }
                let (per_tenant, col) = match u.strip_prefix('+') {
                    Some(c) => (true, c.to_string()),
                    None => (false, u.clone()),
                };
                if t.link == Link::Tenants && col == "name" {
                    self.s.ddl.push(format!("ALTER TABLE {} ADD UNIQUE (name)", t.qualified()));
                    continue;
                }
                let cols = if per_tenant && t.col(&tc).is_some() { format!("{}, {}", qi(&tc), qi(&col)) } else { qi(&col) };
                if self.rng.chance(0.5) && !per_tenant {
                    // A unique index that is partial: rows without a value are free.
                    self.s.ddl.push(format!("CREATE UNIQUE INDEX ON {} ({cols}) WHERE {} IS NOT NULL", t.qualified(), qi(&col)));
                    self.s.features.insert("partial unique index");
                } else {
                    self.s.ddl.push(format!("ALTER TABLE {} ADD UNIQUE ({cols})", t.qualified()));
                }
            }
            // Checks, indexes, comments, triggers, policies.
            if let Some(c) = t.cols.iter().find(|c| matches!(c.ty, Ty::Int | Ty::BigInt) && !t.key_cols.contains(&c.name)) {
                let n = self.name("ck_range");
                self.s.ddl.push(format!("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} <> -7777)", t.qualified(), qi(&n), qi(&c.name)));
                self.s.features.insert("check");
            }
            if let Some(c) = t.cols.iter().find(|c| matches!(c.ty, Ty::Text | Ty::Varchar) && !t.key_cols.contains(&c.name) && c.name != "body") {
                let iname = self.name("idx_lower");
                let partial = self.rng.chance(0.5);
                let opts = if self.rng.chance(0.4) && t.partitioning.is_none() { " WITH (fillfactor=60)" } else { "" };
                let sql = format!("CREATE INDEX {} ON {} (lower({})){opts}{}", qi(&iname), t.qualified(), qi(&c.name), if partial { format!(" WHERE {} IS NOT NULL", qi(&c.name)) } else { String::new() });
                self.s.ddl.push(sql);
                self.s.features.insert("expression index");
                if t.partitioning.is_none() && !partial && self.rng.chance(0.4) {
                    self.s.ddl.push(format!("ALTER TABLE {} CLUSTER ON {}", t.qualified(), qi(&iname)));
                    self.s.features.insert("CLUSTER ON");
                }
            }
            if t.partitioning.is_some() && self.rng.chance(0.7) {
                let iname = self.name("idx_part");
                let c = t.cols.iter().find(|c| c.name != "id").map(|c| c.name.clone()).unwrap_or("id".into());
                self.s.ddl.push(format!("CREATE INDEX {} ON {} ({})", qi(&iname), t.qualified(), qi(&c)));
                self.s.features.insert("partitioned index");
            }
            // A reference no key declares, under a unique index with another column (the copy
            // must follow it, or the copied rows collide with the source's).
            for fk in t.fks.iter().filter(|f| f.undeclared) {
                if let (Some(key), true) = (t.key_cols.first(), t.key_cols.len() == 1) {
                    if self.rng.chance(0.5) {
                        let n = self.name("uq_ref");
                        self.s.ddl.push(format!("CREATE UNIQUE INDEX {} ON {} ({}, {}) WHERE {2} IS NOT NULL", qi(&n), t.qualified(), qi(key), qi(&fk.cols[0])));
                        self.s.features.insert("reference no key declares under a partial unique index");
                    }
                }
            }
            for fk in t.fks.iter().filter(|f| !f.undeclared) {
                let c = format!(
                    "ALTER TABLE {} ADD FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {}{}",
                    t.qualified(),
                    fk.cols.iter().map(|c| qi(c)).collect::<Vec<_>>().join(", "),
                    tables[fk.parent].qualified(),
                    fk.parent_cols.iter().map(|c| qi(c)).collect::<Vec<_>>().join(", "),
                    fk.on_delete,
                    if fk.deferrable { " DEFERRABLE INITIALLY DEFERRED" } else { "" }
                );
                if fk.deferrable {
                    self.s.features.insert("deferrable key");
                }
                late.push(c);
            }
            if self.rng.chance(0.3) {
                self.s.ddl.push(format!("COMMENT ON TABLE {} IS {}", t.qualified(), ql(&format!("table {} — it's {}", t.name, i))));
                if let Some(c) = t.cols.last() {
                    self.s.ddl.push(format!("COMMENT ON COLUMN {}.{} IS {}", t.qualified(), qi(&c.name), ql("a column's comment")));
                }
                self.s.features.insert("comments");
            }
            if self.rng.chance(0.15) && t.col("title").is_none() {
                // A trigger that changes rows: a restore must not fire it.
                let f = format!("{}.{}", qi(&t.schema), qi(&self.name("touch")));
                let c = self.name("touched");
                self.s.ddl.push(format!("ALTER TABLE {} ADD COLUMN {} integer NOT NULL DEFAULT 0", t.qualified(), qi(&c)));
                self.s.ddl.push(format!(
                    "CREATE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.{} := OLD.{0} + 1; RETURN NEW; END $$",
                    qi(&c)
                ));
                let n = self.name("touch_trg");
                self.s.ddl.push(format!("CREATE TRIGGER {} BEFORE UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {f}()", qi(&n), t.qualified()));
                self.s.counters.insert(c.clone());
                self.s.tables[i].cols.push(Col { name: c, ty: Ty::Int, not_null: true });
                self.s.features.insert("trigger");
                if self.rng.chance(0.5) && t.link != Link::Tenants {
                    let f2 = format!("{}.{}", qi(&t.schema), qi(&self.name("stamp")));
                    let touched = qi(&self.s.tables[i].cols.last().map(|c| c.name.clone()).unwrap_or_default());
                    self.s.ddl.push(format!("CREATE FUNCTION {f2}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.{touched} := NEW.{touched} + 100; RETURN NEW; END $$"));
                    let n = self.name("stamp_trg");
                    self.s.ddl.push(format!("CREATE TRIGGER {} BEFORE INSERT ON {} FOR EACH ROW EXECUTE FUNCTION {f2}()", qi(&n), t.qualified()));
                    self.s.features.insert("insert trigger that changes rows");
                }
            }
            if t.col(&tc).is_some() && self.rng.chance(0.15) {
                self.s.ddl.push(format!("ALTER TABLE {} ENABLE ROW LEVEL SECURITY", t.qualified()));
                let n = self.name("tenant_isolation");
                self.s.ddl.push(format!(
                    "CREATE POLICY {} ON {} USING ({}::text = current_setting('app.tenant', true))",
                    qi(&n),
                    t.qualified(),
                    qi(&tc)
                ));
                self.s.features.insert("row level security");
            }
            // A view whose GROUP BY relies on the primary key.
            if t.key_cols.len() == 1 && t.partitioning.is_none() && t.cols.len() > 1 && self.rng.chance(0.25) {
                let other = t.cols.iter().find(|c| !t.key_cols.contains(&c.name) && !matches!(c.ty, Ty::Json | Ty::Xml | Ty::Point | Ty::Box)).map(|c| c.name.clone());
                if let Some(o) = other {
                    let v = format!("{}.{}", qi(&t.schema), qi(&self.name(&format!("{}_summary", t.name.chars().filter(|c| c.is_ascii_alphanumeric()).take(20).collect::<String>()))));
                    self.s.ddl.push(format!(
                        "CREATE VIEW {v} AS SELECT x.{k}, x.{o}, count(*) AS n FROM {} x GROUP BY x.{k}",
                        t.qualified(),
                        k = qi(&t.key_cols[0]),
                        o = qi(&o)
                    ));
                    self.s.features.insert("view relying on a key");
                    if self.rng.chance(0.3) {
                        let n = self.name("keep_rows");
                        self.s.ddl.push(format!("CREATE RULE {} AS ON DELETE TO {v} DO INSTEAD NOTHING", qi(&n)));
                        self.s.features.insert("rule");
                    }
                }
            }
        }
        if self.rng.chance(0.2) {
            let t = &tables[0];
            let v = format!("{}.{}", qi(&t.schema), qi(&self.name("tenant_names")));
            // Made after the data, so it holds the rows a restore's refresh gives.
            self.s.post.push(format!("CREATE MATERIALIZED VIEW {v} AS SELECT name FROM {}", t.qualified()));
            self.s.features.insert("materialized view");
        }
        self.s.post.extend(late);
    }

    fn partitions(&mut self, t: &Table, p: &Partitioning) -> Vec<String> {
        let mut out = Vec::new();
        let part = |g: &mut Gen, suffix: &str| format!("{}.{}", qi(&t.schema), qi(&g.name(&format!("{}_{suffix}", t.name.chars().filter(|c| c.is_ascii_alphanumeric()).take(40).collect::<String>()))));
        match p {
            Partitioning::Range => {
                out.push(format!("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')", part(self, "2024"), t.qualified()));
                out.push(format!("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')", part(self, "2025"), t.qualified()));
                out.push(format!("CREATE TABLE {} PARTITION OF {} DEFAULT", part(self, "default"), t.qualified()));
                self.s.features.insert("default partition");
            }
            Partitioning::List => {
                out.push(format!("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ('a', 'b')", part(self, "ab"), t.qualified()));
                out.push(format!("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ('c')", part(self, "c"), t.qualified()));
                out.push(format!("CREATE TABLE {} PARTITION OF {} DEFAULT", part(self, "other"), t.qualified()));
            }
            Partitioning::Hash => {
                for r in 0..3 {
                    out.push(format!("CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS 3, REMAINDER {r})", part(self, &format!("h{r}")), t.qualified()));
                }
            }
            Partitioning::Nested => {
                let mid = part(self, "2024");
                out.push(format!("CREATE TABLE {mid} PARTITION OF {} FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY LIST (kind)", t.qualified()));
                out.push(format!("CREATE TABLE {} PARTITION OF {mid} FOR VALUES IN ('a', 'b')", part(self, "2024_ab")));
                out.push(format!("CREATE TABLE {} PARTITION OF {mid} DEFAULT", part(self, "2024_rest")));
                out.push(format!("CREATE TABLE {} PARTITION OF {} DEFAULT", part(self, "later"), t.qualified()));
            }
        }
        out
    }

    /// The rows: tenants, then every table in order, each row pointing at rows of its own tenant
    /// (or shared rows, or nothing); the keys added afterwards fill the back edges.
    fn data(&mut self) {
        let n_tables = self.s.tables.len();
        // Keys of each table's rows, per tenant (None: shared or nobody's).
        let mut keys: Vec<Vec<(Option<usize>, Vec<String>)>> = vec![Vec::new(); n_tables];
        let mut counters: Vec<i64> = vec![0; n_tables];
        // Rows owned one-to-one are made when their owner's row is: a slot per owner row.
        let tenants = self.opts.tenants.max(2);
        for k in 0..tenants {
            let id = match &self.s.tables[0].key {
                Key::Identity { start, step, .. } => (start + step * k as i64).to_string(),
                Key::Uuid => self.rng.uuid(),
                _ => format!("t-{k}{}", if k == 1 { " é'\\" } else { "" }),
            };
            self.s.tenant_ids.push(id);
        }
        for ti in 0..n_tables {
            let t = self.s.tables[ti].clone();
            if matches!(t.link, Link::Owned { .. }) {
                continue; // made with their owners
            }
            // The parent rows this table's rows hang under.
            let slots: Vec<(Option<usize>, Option<Vec<String>>)> = match &t.link {
                Link::Tenants => (0..tenants).map(|k| (Some(k), None)).collect(),
                Link::Column => (0..tenants).flat_map(|k| std::iter::repeat_n((Some(k), None), 1 + self.rng.below(self.opts.rows_per_parent as usize + 1))).collect(),
                Link::Via { parent, nullable } => {
                    let mut s: Vec<(Option<usize>, Option<Vec<String>>)> = Vec::new();
                    for (tenant, pk) in keys[*parent].clone() {
                        for _ in 0..self.rng.below(self.opts.rows_per_parent as usize) {
                            s.push((tenant, Some(pk.clone())));
                        }
                    }
                    if *nullable {
                        s.push((None, None));
                    }
                    s
                }
                Link::Shared => (0..3).map(|_| (None, None)).collect(),
                Link::Owned { .. } => vec![],
            };
            for (tenant, parent_key) in slots {
                let row = self.row(ti, tenant, parent_key, &keys, &mut counters);
                let key: Vec<String> = t.key_cols.iter().map(|c| row[t.cols.iter().position(|x| &x.name == c).unwrap_or(0)].clone()).collect();
                keys[ti].push((tenant, key));
                self.s.tables[ti].rows.push((tenant, row));
            }
        }
        // Inserts in table order; owned rows before their owners.
        let mut inserts = Vec::new();
        for (ti, t) in self.s.tables.iter().enumerate() {
            if t.rows.is_empty() {
                continue;
            }
            let late: BTreeSet<&String> = t.fks.iter().filter(|f| f.late).flat_map(|f| f.cols.iter()).collect();
            let overriding = if matches!(t.key, Key::Identity { always: true, .. }) { " OVERRIDING SYSTEM VALUE" } else { "" };
            let cols: Vec<String> = t.cols.iter().map(|c| qi(&c.name)).collect();
            let values: Vec<String> = t
                .rows
                .iter()
                .map(|(_, r)| format!("({})", r.iter().zip(&t.cols).map(|(v, c)| if late.contains(&c.name) { "NULL".to_string() } else { v.clone() }).collect::<Vec<_>>().join(", ")))
                .collect();
            inserts.push((ti, format!("INSERT INTO {} ({}){overriding} VALUES {}", t.qualified(), cols.join(", "), values.join(",\n "))));
        }
        // Owned tables are inserted before every other (their owners point at them).
        inserts.sort_by_key(|(ti, _)| !matches!(self.s.tables[*ti].link, Link::Owned { .. }));
        self.s.data = inserts.iter().map(|(_, s)| s.clone()).collect();
        self.s.inserts = inserts;
        // Back edges filled after every row exists.
        for t in &self.s.tables {
            for fk in t.fks.iter().filter(|f| f.late) {
                let p = &self.s.tables[fk.parent];
                if p.key_cols.len() != 1 {
                    continue;
                }
                let pi = p.cols.iter().position(|c| c.name == p.key_cols[0]).unwrap_or(0);
                for (tenant, row) in &t.rows {
                    let Some(tenant) = tenant else { continue };
                    let Some((_, prow)) = p.rows.iter().find(|(pt, _)| pt == &Some(*tenant)) else { continue };
                    let key_cond: Vec<String> = t
                        .key_cols
                        .iter()
                        .map(|c| {
                            let i = t.cols.iter().position(|x| &x.name == c).unwrap_or(0);
                            format!("{} = {}", qi(c), row[i])
                        })
                        .collect();
                    if key_cond.is_empty() {
                        continue;
                    }
                    self.s.data.push(format!("UPDATE {} SET {} = {} WHERE {}", t.qualified(), qi(&fk.cols[0]), prow[pi], key_cond.join(" AND ")));
                }
            }
        }
        // Sequences past the values used.
        for t in &self.s.tables {
            if matches!(t.key, Key::Identity { .. } | Key::Serial) && !t.rows.is_empty() {
                self.s.data.push(format!(
                    "SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))",
                    ql(&t.qualified()),
                    t.qualified()
                ));
            }
        }
    }

    /// One row of table `ti` for `tenant` under the parent row `parent_key`.
    fn row(&mut self, ti: usize, tenant: Option<usize>, parent_key: Option<Vec<String>>, keys: &[Vec<(Option<usize>, Vec<String>)>], counters: &mut [i64]) -> Vec<String> {
        let t = self.s.tables[ti].clone();
        let tc = self.s.tenant_column.clone();
        let tenant_lit = |g: &Gen, k: usize| match &g.s.tables[0].key {
            Key::Identity { .. } => g.s.tenant_ids[k].clone(),
            Key::Uuid => format!("{}::uuid", ql(&g.s.tenant_ids[k])),
            _ => ql(&g.s.tenant_ids[k]),
        };
        counters[ti] += 1;
        let n = counters[ti];
        let date = match t.partitioning {
            Some(_) => *self.rng.pick(&["'2024-03-01'", "'2025-07-15'", "'2026-02-02'", "'2023-12-31'"]),
            None => "'2025-01-01'",
        };
        let mut row = Vec::new();
        for c in &t.cols {
            let is_key0 = t.key_cols.first() == Some(&c.name);
            let v = if t.link == Link::Tenants && c.name == "id" {
                tenant_lit(self, tenant.unwrap_or(0))
            } else if self.s.counters.contains(&c.name) {
                "0".into()
            } else if is_key0 && !matches!(t.key, Key::TenantCode) {
                match &t.key {
                    Key::Identity { start, step, .. } => (start + step * (n - 1)).to_string(),
                    Key::Serial => n.to_string(),
                    Key::Uuid => format!("{}::uuid", ql(&self.rng.uuid())),
                    Key::Text => ql(&format!("k-{n}{}", if n % 4 == 0 { " Ä/'x" } else { "" })),
                    _ => n.to_string(),
                }
            } else if t.link == Link::Tenants && c.name == "name" {
                ql(&format!("Tenant {} {}", tenant.unwrap_or(0), self.rng.hex(4)))
            } else if c.name == tc {
                match tenant {
                    Some(k) => tenant_lit(self, k),
                    None => "NULL".into(),
                }
            } else if c.name == "code" {
                ql(&format!("c{n}"))
            } else if c.name == "created_at" {
                date.into()
            } else if c.name == "kind" {
                let k = *self.rng.pick(&["a", "b", "c", "z"]);
                ql(k)
            } else if let Some(fk) = t.fks.iter().find(|f| f.cols.contains(&c.name)) {
                let pos = fk.cols.iter().position(|x| x == &c.name).unwrap_or(0);
                let parent = self.s.tables[fk.parent].clone();
                if matches!(t.link, Link::Via { parent: p, .. } if p == fk.parent) && fk.parent != ti && !fk.late && keys[fk.parent].iter().any(|(_, k)| Some(k) == parent_key.as_ref()) {
                    match &parent_key {
                        Some(k) => k[pos].clone(),
                        None => "NULL".into(),
                    }
                } else if fk.parent == ti {
                    // A self reference: an earlier row of the same tenant.
                    match keys[ti].iter().rev().find(|(pt, _)| *pt == tenant) {
                        Some((_, k)) if self.rng.chance(0.6) => k[pos].clone(),
                        _ => "NULL".into(),
                    }
                } else if fk.late {
                    "NULL".into()
                } else if matches!(parent.link, Link::Owned { .. }) {
                    // Make the owned row now, for this row alone.
                    let owned = self.row(fk.parent, tenant, None, keys, counters);
                    let kpos = parent.cols.iter().position(|x| x.name == fk.parent_cols[pos]).unwrap_or(0);
                    let v = owned[kpos].clone();
                    self.s.tables[fk.parent].rows.push((tenant, owned));
                    v
                } else if parent.link == Link::Tenants {
                    match tenant {
                        Some(k) => tenant_lit(self, k),
                        None => "NULL".into(),
                    }
                } else if parent.link == Link::Shared {
                    match keys[fk.parent].first() {
                        Some((_, k)) if self.rng.chance(0.7) => k[pos].clone(),
                        _ => "NULL".into(),
                    }
                } else {
                    match keys[fk.parent].iter().find(|(pt, _)| *pt == tenant && tenant.is_some()) {
                        Some((_, k)) => k[pos].clone(),
                        None => "NULL".into(),
                    }
                }
            } else if t.global_unique.iter().any(|u| u == &c.name || u.strip_prefix('+') == Some(c.name.as_str())) {
                if self.rng.chance(0.15) {
                    "NULL".into()
                } else {
                    ql(&format!("u-{ti}-{n}-{}", self.rng.hex(6)))
                }
            } else if c.name == "body" {
                if self.rng.chance(0.5) {
                    ql(&self.rng.hex(6000))
                } else {
                    "NULL".into()
                }
            } else {
                self.value(&c.ty, c.not_null)
            };
            row.push(v);
        }
        row
    }

    fn value(&mut self, ty: &Ty, not_null: bool) -> String {
        if !not_null && self.rng.chance(0.2) {
            return "NULL".into();
        }
        let r = &mut self.rng;
        match ty {
            Ty::Int => r.pick(&["0", "-1", "2147483647", "42", "-2147483648"]).to_string(),
            Ty::BigInt => r.pick(&["0", "9223372036854775807", "-9223372036854775808", "12345678901"]).to_string(),
            Ty::SmallInt => r.pick(&["0", "-32768", "32767", "7"]).to_string(),
            Ty::Numeric => r.pick(&["'1.0'", "'1.00'", "'1.50'", "'NaN'", "'0.000000000000000000001'", "'-12345678901234567890.123'", "'100'"]).to_string(),
            Ty::Float8 => r.pick(&["'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "'0.1'", "'1e-300'", "'3.141592653589793'"]).to_string(),
            Ty::Real => r.pick(&["'NaN'::real", "'Infinity'::real", "'0.1'::real", "'-3.4e38'::real"]).to_string(),
            Ty::Text | Ty::Varchar => {
                let choices = ["", " ", "\\.", "a\nb", "tab\there", "back\\slash", "quote ' \"", "日本語", "\u{1}ctl\u{7f}", "\\.\n\\.", "NULL", "\\N", "line\r\n"];
                let v = *r.pick(&choices);
                qe(v)
            }
            Ty::Citext => r.pick(&["'Abc'", "'abc'", "'ABC'", "''"]).to_string(),
            Ty::Bool => r.pick(&["true", "false"]).to_string(),
            Ty::Date => r.pick(&["'infinity'", "'-infinity'", "'2000-02-29'", "'0044-03-15 BC'"]).to_string(),
            Ty::Timestamptz => r.pick(&["'2026-12-06 10:11:12.123456+00'", "'infinity'", "'1999-12-31 23:59:59+05:30'"]).to_string(),
            Ty::Interval => r.pick(&["'1 year 2 mons -3 days'", "'00:00:00.000001'", "'-178000000 years'"]).to_string(),
            Ty::Bytea => r.pick(&["'\\x00ff'::bytea", "''::bytea", "'\\x5c2e0a'::bytea"]).to_string(),
            Ty::Uuid => format!("{}::uuid", ql(&r.uuid())),
            Ty::Jsonb => r.pick(&["'{\"a\": 1, \"b\": [1, 2.50, null]}'", "'\"\\\\.\"'", "'{}'", "'[{\"x\": \"\\u00e9\"}]'"]).to_string(),
            Ty::Json => r.pick(&["'{\"a\":1,  \"a\":2}'", "'[1, 2.50 ,3]'", "'  {\"k\": \"v\"}  '", "'null'"]).to_string(),
            Ty::Xml => r.pick(&["'<a x=\"1\">t</a>'", "'<r><![CDATA[<x>]]></r>'", "'plain text'"]).to_string(),
            Ty::Point => r.pick(&["'(1,2)'", "'(-0.5,1e10)'", "'(0,0)'"]).to_string(),
            Ty::Box => r.pick(&["'(1,1),(0,0)'", "'(2,0.5),(0,0)'", "'(1,1),(1,1)'"]).to_string(),
            Ty::Inet => r.pick(&["'10.0.0.1/8'", "'::1'", "'192.168.1.1'"]).to_string(),
            Ty::IntArray => r.pick(&["'{1,NULL,3}'", "'{}'", "'{{1,2},{3,4}}'"]).to_string(),
            Ty::TextArray => r.pick(&["'{\"a b\",\"c\\\\\\\"d\",NULL}'", "'{}'", "ARRAY['\\.', '']"]).to_string(),
            Ty::Enum(t) => {
                let labels = self.enums.iter().find(|(n, _)| n == t).map(|(_, l)| l.clone()).unwrap_or_default();
                let l = self.rng.pick(&labels).clone();
                format!("{}::{t}", ql(&l))
            }
            Ty::Domain(t) => format!("{}::{t}", self.rng.range(0, 1000)),
            Ty::Composite(t) => format!("ROW({}, {})::{t}", self.rng.pick(&["1.50", "NULL", "0"]), self.rng.pick(&["'EUR'", "NULL", "'a,b'"])),
        }
    }
}

fn pick_action(rng: &mut Rng, from: &[&'static str]) -> &'static str {
    from[rng.below(from.len())]
}

fn key_ty(k: &Key) -> Ty {
    match k {
        Key::Identity { .. } | Key::Serial => Ty::BigInt,
        Key::Uuid => Ty::Uuid,
        _ => Ty::Text,
    }
}

/// The type of a column that refers to a column of type `t`.
fn ref_ty(t: &Ty) -> Ty {
    match t {
        Ty::Int | Ty::SmallInt | Ty::BigInt => Ty::BigInt,
        other => other.clone(),
    }
}
