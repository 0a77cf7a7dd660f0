//! Transformation rules: per-row changes applied, in order, to the rows read from the source
//! before they are mapped onto the target (copying production tenants into staging without
//! their personal data, normalising imported files).
//!
//! Rules name the source's tables and columns. Each is checked before anything runs (unknown
//! table or column, a text rule on a non-text column, an invalid regular expression) and then
//! runs as one SQL statement over the staged rows, so a rule sees the result of the rules before
//! it. NULL stays NULL under every rule that transforms a value (set and copy replace it).

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::error::{Error, Result};
use crate::source::postgres::{qi, ql};

/// One rule: what to do to which column of which table.
#[derive(Debug, Clone, Serialize, Deserialize, TS, PartialEq, Eq)]
pub struct Rule {
    /// The source table (`schema.table` or the bare name).
    pub table: String,
    /// The column changed (for `drop_row`, the column tested).
    pub column: String,
    pub action: Action,
}

#[derive(Debug, Clone, Serialize, Deserialize, TS, PartialEq, Eq)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Action {
    /// Set a constant (NULL when `value` is null).
    Set { value: Option<String> },
    /// Copy another column's value.
    Copy { from: String },
    Lower,
    Upper,
    Trim,
    /// Replace every match of a POSIX regular expression (`\1`… refer to groups).
    Replace { pattern: String, replacement: String },
    /// SHA-256 of the salt followed by the value, in hex.
    Hash { salt: String },
    /// Keep the first and last characters, every other one becomes `*`.
    Mask,
    /// A realistic, deterministic fake (same input and salt → same fake).
    Fake { kind: FakeKind, salt: String },
    /// Set NULL.
    Null,
    /// A fresh value of the same form, for values that must differ in a copy (API keys, tokens,
    /// idempotency keys, slugs under a unique index): a UUID for a UUID, hex or base64 of the same
    /// length (and case) for hex or base64, a number for a number (as long as an integer column always
/// holds, at least nine digits in text), else the value with a random suffix. A `template`
    /// instead: `{value}`, `{uuid}`, `{hex}` (32 hex digits) are filled in, e.g. `key_{hex}`.
    Regenerate { template: Option<String> },
    /// Drop the row when the condition on `column` holds.
    DropRow { op: Op, value: Option<String> },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, TS, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FakeKind {
    Email,
    Name,
    FirstName,
    LastName,
    Phone,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, TS, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Contains,
    Matches,
    IsNull,
    NotNull,
}

pub(crate) const FIRST: &[&str] = &[
    "Ada", "Alan", "Amara", "Ben", "Carla", "Chen", "Dara", "Diego", "Elena", "Emil", "Fatima", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jonas", "Kai",
    "Lena", "Leo", "Maya", "Mateo", "Nadia", "Noah", "Olga", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Sofia", "Tariq", "Uma", "Vera", "Wei", "Yara", "Zoe",
];
pub(crate) const LAST: &[&str] = &[
    "Abbott", "Bauer", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ibrahim", "Jensen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor",
    "Petrov", "Quintero", "Rossi", "Schmidt", "Tanaka", "Ueda", "Varga", "Weber", "Xu", "Yilmaz", "Zimmer",
];

/// Types the text rules accept.
pub(crate) fn is_text(ty: &str) -> bool {
    let t = ty.to_ascii_lowercase();
    t == "text" || t.starts_with("character") || t.starts_with("varchar") || t == "citext" || t == "name" || t.starts_with("char")
}

/// The values a rule's statement binds: `$1`, `$2`, … in the order given (text, or NULL).
#[derive(Debug, Default)]
pub(crate) struct Binds(pub Vec<Option<String>>);

impl Binds {
    /// A placeholder for `v`, typed text.
    fn text(&mut self, v: Option<&str>) -> String {
        self.0.push(v.map(str::to_string));
        format!("${}::text", self.0.len())
    }
}

/// How many digits a fresh number in column `c` of type `ty` has, and which values count as
/// numbers: in an integer column as many digits as the type always holds, and every integer (0
/// and negative ones too) becomes a positive number; in unbounded text at least nine; else the
/// value's own length. So a short number (`7`) is not made anew among the eight others of its
/// length, where it would meet a row the target has.
fn number_form(c: &str, ty: Option<&str>) -> (String, &'static str) {
    let natural = "^[1-9][0-9]*$";
    match ty.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
        Some("smallint" | "int2") => ("4".into(), "^-?[0-9]+$"),
        Some("integer" | "int" | "int4") => ("9".into(), "^-?[0-9]+$"),
        Some("bigint" | "int8") => ("18".into(), "^-?[0-9]+$"),
        Some("numeric" | "text" | "character varying" | "varchar" | "citext") => (format!("greatest(char_length({c}), 9)"), natural),
        _ => (format!("char_length({c})"), natural),
    }
}

/// SQL for a fresh value in the form of `c` (see [`Action::Regenerate`]); `ty` is the column's
/// type when known (see [`number_form`]). A number is the row's number `x.sh_n` plus the
/// statement's one offset `o.sh_offset` (see [`sql`]), so no two rows get the same one.
fn regenerate(c: &str, template: Option<&str>, ty: Option<&str>, b: &mut Binds) -> String {
    let (digits, number) = number_form(c, ty);
    let hex32 = "md5(random()::text || clock_timestamp()::text)";
    let hex_of = |n: String| format!("substr(repeat({hex32}, ({n}) / 32 + 1), 1, {n})");
    match template {
        Some(t) => {
            let t = b.text(Some(t));
            format!("CASE WHEN {c} IS NULL THEN NULL ELSE replace(replace(replace({t}, '{{value}}', {c}), '{{uuid}}', gen_random_uuid()::text), '{{hex}}', {hex32}) END")
        }
        None => format!(
            "CASE WHEN {c} IS NULL THEN NULL \
             WHEN {c} ~* '^[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}$' THEN gen_random_uuid()::text \
             WHEN {c} ~ '{number}' THEN (10::numeric ^ ({digits} - 1) + mod(o.sh_offset + x.sh_n, 9 * 10::numeric ^ ({digits} - 1)))::numeric(1000, 0)::text \
             WHEN {c} ~ '^[0-9a-f]+$' THEN {lower} \
             WHEN {c} ~ '^[0-9A-F]+$' THEN upper({lower}) \
             WHEN {c} ~ '^[A-Za-z0-9+/_-]+=*$' AND char_length({c}) >= 16 THEN \
                  rpad(substr(translate(encode(decode(repeat({hex32}, char_length({c}) / 24 + 1), 'hex'), 'base64'), E'\\n', ''), 1, char_length(rtrim({c}, '='))), char_length({c}), '=') \
             ELSE {c} || '-' || substr({hex32}, 1, 6) END",
            lower = hex_of(format!("char_length({c})"))
        ),
    }
}

fn array(words: &[&str]) -> String {
    let w: Vec<String> = words.iter().map(|w| ql(w)).collect();
    format!("(ARRAY[{}])", w.join(", "))
}

/// A deterministic 31-bit number from the salt and the value.
fn h(salt: &str, v: &str, b: &mut Binds) -> String {
    format!("(('x' || substr(encode(sha256(convert_to({} || {v}, 'UTF8')), 'hex'), 1, 8))::bit(32)::bigint & 2147483647)", b.text(Some(salt)))
}

fn fake(kind: FakeKind, salt: &str, v: &str, b: &mut Binds) -> String {
    let n = h(salt, v, b);
    let first = format!("{}[1 + {n} % {}]", array(FIRST), FIRST.len());
    let last = format!("{}[1 + ({n} / {}) % {}]", array(LAST), FIRST.len(), LAST.len());
    let e = match kind {
        FakeKind::FirstName => first,
        FakeKind::LastName => last,
        FakeKind::Name => format!("{first} || ' ' || {last}"),
        FakeKind::Email => format!("lower({first} || '.' || {last}) || ({n} % 1000)::text || '@example.com'"),
        FakeKind::Phone => format!("'+1-555-' || lpad((({n} / 10000) % 1000)::text, 3, '0') || '-' || lpad(({n} % 10000)::text, 4, '0')"),
    };
    format!("CASE WHEN {v} IS NULL THEN NULL ELSE {e} END")
}

/// The columns of one staged table: name and, when known, the source type.
pub(crate) struct Columns<'a> {
    pub table: &'a str,
    pub cols: &'a [(String, Option<String>)],
}

impl Columns<'_> {
    fn ty(&self, col: &str) -> Result<Option<&str>> {
        self.cols
            .iter()
            .find(|(c, _)| c == col)
            .map(|(_, t)| t.as_deref())
            .ok_or_else(|| Error::validation(format!("rule on {}: the table has no column \"{col}\" (it has {})", self.table, self.names())))
    }
    fn names(&self) -> String {
        self.cols.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// Checks a rule against its table's columns.
pub(crate) fn check(rule: &Rule, cols: &Columns) -> Result<()> {
    let ty = cols.ty(&rule.column)?;
    let text_only = matches!(rule.action, Action::Lower | Action::Upper | Action::Trim | Action::Replace { .. } | Action::Mask | Action::Fake { .. } | Action::Hash { .. });
    if let (true, Some(t)) = (text_only, ty) {
        if !is_text(t) {
            return Err(Error::validation(format!(
                "rule {} on {}.{}: the column is {t}, and this rule changes text; use set, null or copy for it",
                name(&rule.action),
                cols.table,
                rule.column
            )));
        }
    }
    match &rule.action {
        Action::Copy { from } => {
            cols.ty(from)?;
        }
        Action::Replace { pattern, .. } if pattern.is_empty() => return Err(Error::validation(format!("rule replace on {}.{}: the pattern is empty", cols.table, rule.column))),
        Action::DropRow { op, value } if !matches!(op, Op::IsNull | Op::NotNull) && value.is_none() => {
            return Err(Error::validation(format!("rule drop_row on {}.{}: the condition needs a value", cols.table, rule.column)))
        }
        _ => {}
    }
    Ok(())
}

pub(crate) fn name(a: &Action) -> &'static str {
    match a {
        Action::Set { .. } => "set",
        Action::Copy { .. } => "copy",
        Action::Lower => "lower",
        Action::Upper => "upper",
        Action::Trim => "trim",
        Action::Replace { .. } => "replace",
        Action::Hash { .. } => "hash",
        Action::Mask => "mask",
        Action::Fake { .. } => "fake",
        Action::Null => "null",
        Action::Regenerate { .. } => "regenerate",
        Action::DropRow { .. } => "drop_row",
    }
}

/// The statement applying `rule` to the staged (text) relation, with the values it binds: every
/// value from the rule is a bound parameter. `ty` is the column's source type when known, as the
/// server names it (comparisons cast to it); the caller has it named by the server first.
pub(crate) fn sql(rule: &Rule, relation: &str, ty: Option<&str>) -> (String, Binds) {
    let mut b = Binds::default();
    let c = qi(&rule.column);
    let set = |e: String| format!("UPDATE {relation} SET {c} = {e}");
    let stmt = match &rule.action {
        Action::Set { value } => {
            let v = b.text(value.as_deref());
            set(v)
        }
        Action::Copy { from } => set(qi(from)),
        Action::Lower => set(format!("lower({c})")),
        Action::Upper => set(format!("upper({c})")),
        Action::Trim => set(format!("btrim({c})")),
        Action::Replace { pattern, replacement } => {
            let (p, r) = (b.text(Some(pattern)), b.text(Some(replacement)));
            set(format!("regexp_replace({c}, {p}, {r}, 'g')"))
        }
        Action::Hash { salt } => {
            let s = b.text(Some(salt));
            set(format!("encode(sha256(convert_to({s} || {c}, 'UTF8')), 'hex')"))
        }
        Action::Mask => set(format!("CASE WHEN char_length({c}) <= 2 THEN repeat('*', char_length({c})) ELSE left({c}, 1) || repeat('*', char_length({c}) - 2) || right({c}, 1) END")),
        Action::Fake { kind, salt } => {
            let e = fake(*kind, salt, &c, &mut b);
            set(e)
        }
        Action::Null => set("NULL".into()),
        Action::Regenerate { template } => {
            // Numbers are made distinct, not drawn one by one (nine 4-digit codes drawn at
            // random met each other once in 250 runs): the row's number in the table plus one
            // random offset, within the digits the column always holds. The offset is drawn once,
            // in a CTE of its own (a window function's `random()` is drawn again for each row).
            let e = regenerate(&format!("t.{c}"), template.as_deref(), ty, &mut b);
            format!(
                "WITH o AS MATERIALIZED (SELECT floor(random() * 9e17)::numeric AS sh_offset), \
                 x AS MATERIALIZED (SELECT ctid AS sh_rid, row_number() OVER () AS sh_n FROM {relation}) \
                 UPDATE {relation} AS t SET {c} = {e} FROM x, o WHERE t.ctid = x.sh_rid"
            )
        }
        Action::DropRow { op, value } => {
            let typed = |e: String| match ty {
                Some(t) if !is_text(t) => format!("CAST({e} AS {t})"),
                _ => e,
            };
            let v = b.text(value.as_deref());
            let cond = match op {
                Op::Eq => format!("{} = {}", typed(c.clone()), typed(v)),
                Op::Ne => format!("{} <> {}", typed(c.clone()), typed(v)),
                Op::Lt => format!("{} < {}", typed(c.clone()), typed(v)),
                Op::Gt => format!("{} > {}", typed(c.clone()), typed(v)),
                Op::Contains => format!("strpos({c}, {v}) > 0"),
                Op::Matches => format!("{c} ~ {v}"),
                Op::IsNull => format!("{c} IS NULL"),
                Op::NotNull => format!("{c} IS NOT NULL"),
            };
            format!("DELETE FROM {relation} WHERE {cond}")
        }
    };
    (stmt, b)
}
