//! The portable export: what a customer gets for "give me my data" — a ZIP holding, per table,
//! `tables/<schema.table>.jsonl` (one JSON object per row, values typed) and
//! `tables/<schema.table>.csv` (PostgreSQL's CSV, header line, NULL unquoted-empty), a
//! `schema.json` (tables, columns and types, keys, foreign keys, the tenant column) and a
//! `manifest.json` (tenants, row counts, and the size and SHA-256 of every other file).
//!
//! Written to a temporary file beside the destination and renamed when complete. Read back
//! (import) only after every file is checked against the manifest.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::AssertSqlSafe;
use ts_rs::TS;

use super::stage::{self, col_list, Staged, Tx};
use crate::error::{Error, ErrorCode, Result};
use crate::source::pg_apply::Target;
use crate::source::postgres::{q, qi};

pub const FORMAT: &str = "safehold-portable-export";

#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct ExportedFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub created_at: String,
    pub source: String,
    pub tenants: Vec<String>,
    pub tenant_column: String,
    pub tenants_table: String,
    /// Table → rows.
    pub tables: BTreeMap<String, u64>,
    pub files: Vec<ExportedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaFile {
    pub tables: Vec<TableSchema>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableSchema {
    pub name: String,
    pub columns: Vec<ColumnSchema>,
    pub primary_key: Vec<String>,
    pub foreign_keys: Vec<ForeignKeySchema>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForeignKeySchema {
    pub columns: Vec<String>,
    pub references_table: String,
    pub references_columns: Vec<String>,
}

fn hex_sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn zip_err(path: &Path) -> impl Fn(zip::result::ZipError) -> Error + '_ {
    move |e| Error::new(ErrorCode::Io, format!("cannot write the export {}: {e}", path.display()))
}

pub(crate) struct ExportMeta<'a> {
    pub source: String,
    pub tenants: &'a [String],
    pub tenant_column: &'a str,
    pub tenants_table: &'a str,
}

/// Writes the staged tables (after rules) to a portable export at `path`.
pub(crate) async fn write(tx: &mut Tx<'_>, path: &Path, staged: &Staged, schema: &Target, meta: &ExportMeta<'_>) -> Result<Vec<ExportedFile>> {
    let partial = partial_path(path);
    let out = write_to(tx, &partial, staged, schema, meta).await;
    into_place(&partial, path, out)
}

/// A complete export renamed into place; a failed one's partial file removed.
fn into_place(partial: &Path, path: &Path, written: Result<Vec<ExportedFile>>) -> Result<Vec<ExportedFile>> {
    match written {
        Ok(files) => {
            std::fs::rename(partial, path).map_err(|e| Error::io(format!("cannot move the export into place at {}", path.display()), &e))?;
            Ok(files)
        }
        Err(e) => {
            let _ = std::fs::remove_file(partial);
            Err(e)
        }
    }
}

pub(crate) fn partial_path(path: &Path) -> PathBuf {
    crate::private::partial_beside(path)
}

/// One table of an export: its rows as JSON Lines and as CSV, and its description.
pub(crate) struct PlainTable {
    pub schema: TableSchema,
    pub rows: u64,
    pub jsonl: Vec<u8>,
    pub csv: Vec<u8>,
}

async fn write_to(tx: &mut Tx<'_>, partial: &Path, staged: &Staged, schema: &Target, meta: &ExportMeta<'_>) -> Result<Vec<ExportedFile>> {
    let mut zip = ExportZip::create(partial)?;
    for t in &staged.tables {
        // JSON Lines, values in their source types.
        let typed: Vec<String> = t
            .cols
            .iter()
            .map(|(c, ty)| match ty {
                Some(ty) => format!("CAST(s.{0} AS {ty}) AS {0}", qi(c)),
                None => format!("s.{0} AS {0}", qi(c)),
            })
            .collect();
        let mut jsonl = Vec::new();
        {
            let sql = format!("SELECT row_to_json(_sh_x.*)::text FROM (SELECT {} FROM {} s) _sh_x", typed.join(", "), t.relation);
            let mut rows = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).fetch(&mut **tx);
            while let Some(line) = rows.try_next().await.map_err(q(&format!("export {}", t.name)))? {
                jsonl.extend_from_slice(line.as_bytes());
                jsonl.push(b'\n');
            }
        }
        let mut csv = Vec::new();
        {
            let mut out = (**tx)
                .copy_out_raw(&format!("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT csv, HEADER true)", col_list(&t.cols), t.relation))
                .await
                .map_err(q(&format!("export {}", t.name)))?;
            while let Some(b) = out.try_next().await.map_err(q(&format!("export {}", t.name)))? {
                csv.extend_from_slice(&b);
            }
        }
        let not_null = |c: &str| schema.cols.get(&t.name).and_then(|cs| cs.iter().find(|x| x.name == c)).is_some_and(|x| x.not_null);
        let described = TableSchema {
            name: t.name.clone(),
            columns: t.cols.iter().map(|(c, ty)| ColumnSchema { name: c.clone(), ty: ty.clone().unwrap_or_else(|| "text".into()), nullable: !not_null(c) }).collect(),
            primary_key: schema.pks.get(&t.name).cloned().unwrap_or_default(),
            foreign_keys: schema
                .fks
                .iter()
                .filter(|fk| fk.child == t.name)
                .map(|fk| ForeignKeySchema {
                    columns: fk.cols.iter().map(|(c, _)| c.clone()).collect(),
                    references_table: fk.parent.clone(),
                    references_columns: fk.cols.iter().map(|(_, p)| p.clone()).collect(),
                })
                .collect(),
        };
        zip.table(PlainTable { schema: described, rows: t.rows, jsonl, csv })?;
    }
    zip.finish(meta)
}

/// Writes tables read elsewhere (a SQLite database's) to a portable export at `path`, through a
/// partial file renamed when complete.
pub(crate) fn write_plain(path: &Path, tables: Vec<PlainTable>, meta: &ExportMeta<'_>) -> Result<Vec<ExportedFile>> {
    let partial = partial_path(path);
    let written = ExportZip::create(&partial).and_then(|mut zip| {
        for t in tables {
            zip.table(t)?;
        }
        zip.finish(meta)
    });
    into_place(&partial, path, written)
}

/// The ZIP being written: per table its JSON Lines and CSV (each table written as it comes, so
/// one table at a time is in memory), then schema.json, then the manifest with the size and
/// SHA-256 of every other file.
struct ExportZip<'p> {
    partial: &'p Path,
    zip: zip::ZipWriter<std::fs::File>,
    files: Vec<ExportedFile>,
    tables: BTreeMap<String, u64>,
    described: Vec<TableSchema>,
}

impl<'p> ExportZip<'p> {
    fn create(partial: &'p Path) -> Result<Self> {
        if let Some(dir) = partial.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(Error::validation(format!("the folder {} does not exist: choose where to save the export", dir.display())));
            }
        }
        // Tenant data in plain text: its owner's alone.
        let file = crate::private::create_new(partial).map_err(|e| Error::io(format!("cannot create {}", partial.display()), &e))?;
        Ok(Self { partial, zip: zip::ZipWriter::new(file), files: Vec::new(), tables: BTreeMap::new(), described: Vec::new() })
    }

    fn add(&mut self, name: String, data: &[u8]) -> Result<()> {
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        self.zip.start_file(name.clone(), opts).map_err(zip_err(self.partial))?;
        self.zip.write_all(data).map_err(|e| Error::io(format!("cannot write the export {}", self.partial.display()), &e))?;
        self.files.push(ExportedFile { path: name, bytes: data.len() as u64, sha256: hex_sha(data) });
        Ok(())
    }

    fn table(&mut self, t: PlainTable) -> Result<()> {
        self.add(format!("tables/{}.jsonl", t.schema.name), &t.jsonl)?;
        self.add(format!("tables/{}.csv", t.schema.name), &t.csv)?;
        self.tables.insert(t.schema.name.clone(), t.rows);
        self.described.push(t.schema);
        Ok(())
    }

    fn finish(mut self, meta: &ExportMeta<'_>) -> Result<Vec<ExportedFile>> {
        let partial = self.partial;
        let schema_json = serde_json::to_vec_pretty(&SchemaFile { tables: std::mem::take(&mut self.described) }).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?;
        self.add("schema.json".into(), &schema_json)?;
        let manifest = Manifest {
            format: FORMAT.into(),
            version: 1,
            created_at: crate::catalog::now(),
            source: meta.source.clone(),
            tenants: meta.tenants.to_vec(),
            tenant_column: meta.tenant_column.into(),
            tenants_table: meta.tenants_table.into(),
            tables: std::mem::take(&mut self.tables),
            files: self.files.clone(),
        };
        let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?;
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        self.zip.start_file("manifest.json", opts).map_err(zip_err(partial))?;
        self.zip.write_all(&manifest_json).map_err(|e| Error::io(format!("cannot write the export {}", partial.display()), &e))?;
        let file = self.zip.finish().map_err(zip_err(partial))?;
        file.sync_all().map_err(|e| Error::io(format!("cannot write the export {}", partial.display()), &e))?;
        Ok(self.files)
    }
}

/// A portable export, checked: every file present and matching the manifest.
pub(crate) struct Opened {
    pub manifest: Manifest,
    pub schema: SchemaFile,
    zip: zip::ZipArchive<std::fs::File>,
    path: PathBuf,
}

/// The most a portable export's file may hold once uncompressed (SAFEHOLD_IMPORT_MAX_BYTES,
/// default 64 GiB); the manifest and the schema are smaller still.
fn max_entry_bytes() -> u64 {
    std::env::var("SAFEHOLD_IMPORT_MAX_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(64 << 30)
}
const MAX_META_BYTES: u64 = 64 << 20;

/// Streams an entry in chunks to `each`, never more than `limit` bytes (a ZIP that says less and
/// holds more — a zip bomb — stops at the limit with an error). Returns the bytes and the SHA-256.
fn stream_entry(zip: &mut zip::ZipArchive<std::fs::File>, name: &str, path: &Path, limit: u64, each: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<(u64, String)> {
    let f = zip.by_name(name).map_err(|_| Error::validation(format!("{} is not a complete portable export: it has no {name}", path.display())))?;
    if f.size() > limit {
        return Err(Error::validation(format!(
            "{}: {name} says it holds {} bytes, more than an import reads ({limit}); nothing was imported (SAFEHOLD_IMPORT_MAX_BYTES raises the limit)",
            path.display(),
            f.size()
        )));
    }
    let mut reader = f.take(limit + 1);
    let mut buf = vec![0u8; 1 << 20];
    let (mut total, mut sha) = (0u64, Sha256::new());
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::validation(format!("{}: {name} cannot be read ({e}): the file is damaged", path.display())).caused_by(&e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(Error::validation(format!("{}: {name} holds more than it says (more than {limit} bytes uncompressed): the export is damaged or hostile; nothing was imported", path.display())));
        }
        sha.update(&buf[..n]);
        each(&buf[..n])?;
    }
    Ok((total, hex::encode(sha.finalize())))
}

fn read_small(zip: &mut zip::ZipArchive<std::fs::File>, name: &str, path: &Path) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    stream_entry(zip, name, path, MAX_META_BYTES, &mut |c| {
        data.extend_from_slice(c);
        Ok(())
    })?;
    Ok(data)
}

pub(crate) fn open(path: &Path) -> Result<Opened> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), &e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|_| Error::validation(format!("{} is not a portable export (not a ZIP file)", path.display())))?;
    if zip.by_name("manifest.json").is_err() {
        return Err(Error::validation(format!("{} is not a Safehold portable export: it has no manifest.json", path.display())));
    }
    let manifest: Manifest = serde_json::from_slice(&read_small(&mut zip, "manifest.json", path)?)
        .map_err(|e| Error::validation(format!("{} is not a Safehold portable export: its manifest.json is not valid ({e})", path.display())).caused_by(&e))?;
    if manifest.format != FORMAT {
        return Err(Error::validation(format!("{} is not a Safehold portable export (its manifest says \"{}\")", path.display(), manifest.format)));
    }
    let listed: std::collections::BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for i in 0..zip.len() {
        let name = zip.by_index(i).map(|f| f.name().to_string()).unwrap_or_default();
        if name != "manifest.json" && !listed.contains(name.as_str()) {
            return Err(Error::validation(format!("{}: it holds {name}, which its manifest does not list: the export was changed; ask for a new export", path.display())));
        }
    }
    // Every file checked against the manifest, streamed: a file may hold no more than the
    // manifest says.
    for f in &manifest.files {
        let limit = f.bytes.min(max_entry_bytes());
        let (bytes, sha) = stream_entry(&mut zip, &f.path, path, limit, &mut |_| Ok(()))?;
        if sha != f.sha256 || bytes != f.bytes {
            return Err(Error::validation(format!(
                "{}: {} does not match its SHA-256 in manifest.json: the export is damaged or was changed; nothing was imported",
                path.display(),
                f.path
            )));
        }
    }
    let schema: SchemaFile = serde_json::from_slice(&read_small(&mut zip, "schema.json", path)?)
        .map_err(|e| Error::validation(format!("{}: schema.json is not valid ({e})", path.display())).caused_by(&e))?;
    // The manifest and the schema name the same tables, each with its files.
    let described: std::collections::BTreeSet<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    for t in manifest.tables.keys() {
        if !described.contains(t.as_str()) {
            return Err(Error::validation(format!("{}: the manifest counts rows of {t}, which schema.json does not describe: the export was changed; ask for a new export", path.display())));
        }
    }
    for t in &schema.tables {
        if !manifest.tables.contains_key(&t.name) || !listed.contains(format!("tables/{}.csv", t.name).as_str()) {
            return Err(Error::validation(format!("{}: schema.json describes {}, whose rows the manifest does not list: the export was changed; ask for a new export", path.display(), t.name)));
        }
    }
    Ok(Opened { manifest, schema, zip, path: path.to_path_buf() })
}

impl Opened {
    /// One file of the export, checked against the manifest's size (never more than it says).
    pub(crate) fn entry(&mut self, name: &str) -> Result<Vec<u8>> {
        let limit = self.manifest.files.iter().find(|f| f.path == name).map(|f| f.bytes).unwrap_or(0).min(max_entry_bytes());
        let mut data = Vec::new();
        stream_entry(&mut self.zip, name, &self.path, limit, &mut |c| {
            data.extend_from_slice(c);
            Ok(())
        })?;
        Ok(data)
    }

    /// Stages every table from its CSV file, streamed; the types schema.json names are only
    /// kept when the server knows them as types (they are never SQL); checks the counts against
    /// the manifest.
    pub(crate) async fn stage(&mut self, tx: &mut Tx<'_>, staged: &mut Staged) -> Result<()> {
        for t in self.schema.tables.clone() {
            let mut types: Vec<(String, String)> = Vec::new();
            for c in &t.columns {
                if let Some(ty) = stage::known_type(tx, &c.ty).await? {
                    types.push((c.name.clone(), ty));
                }
            }
            let name = format!("tables/{}.csv", t.name);
            let limit = self.manifest.files.iter().find(|f| f.path == name).map(|f| f.bytes).unwrap_or(0).min(max_entry_bytes());
            // Unpacked to an unnamed temporary file (0600, gone when closed), never more than the
            // manifest says, then streamed to the server: an export larger than memory imports.
            let mut file = tempfile::tempfile().map_err(|e| Error::io("cannot create a temporary file to unpack the export into", &e))?;
            stream_entry(&mut self.zip, &name, &self.path, limit, &mut |c| file.write_all(c).map_err(|e| Error::io("cannot unpack the export to a temporary file", &e)))?;
            file.seek(std::io::SeekFrom::Start(0)).map_err(|e| Error::io("cannot read the unpacked export", &e))?;
            stage::csv_reader(tx, staged, &t.name, file, &types).await?;
            let rows = staged.get(&t.name).map(|s| s.rows).unwrap_or(0);
            if let Some(expected) = self.manifest.tables.get(&t.name).filter(|n| **n != rows) {
                return Err(Error::validation(format!("{}: {} holds {rows} rows, the manifest says {expected}", self.path.display(), t.name)));
            }
        }
        Ok(())
    }
}
