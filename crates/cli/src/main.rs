//! `safehold`: the Safehold engine from a terminal, for servers and scripts.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use safehold_core::connections::{self, ConnectionInput};
use safehold_core::archive::ArchiveReader;
use safehold_core::backup::{self, BackupRequest, DEFAULT_ZSTD_LEVEL};
use safehold_core::configurations::BackupType;
use safehold_core::repository::Repository;
use safehold_core::secrets::{Keychain, SecretStore};
use safehold_core::source::{self, CancelToken, Progress, ProgressSink, SourceSpec};
use safehold_core::unlock::KeySources;
use safehold_core::{configurations, context, demo, restore, verify, Ctx, Error};

#[derive(Parser)]
#[command(name = "safehold", version, about = "Back up, verify, restore and migrate a multi-tenant platform's data")]
struct Cli {
    /// Where Safehold keeps its catalog and files (default: the OS data directory).
    #[arg(long, global = true, env = context::HOME_ENV)]
    home: Option<std::path::PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The platform databases Safehold backs up.
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// Backup configurations.
    #[command(subcommand, name = "config")]
    Config(ConfigCommand),
    /// Create the embedded demo platform (a SQLite database) and register it, if it is not there.
    Demo,
    /// Back up a database into a repository (a directory), as one encrypted, compressed archive.
    Backup(BackupArgs),
    /// Restore a whole backup into an empty database.
    Restore(RestoreArgs),
    /// Check archives: quickly (checksums, no key) or deeply (decrypt and check every section).
    Verify(VerifyArgs),
    /// List the backups of a repository (no key needed).
    Ls { repo: PathBuf },
    /// Show an archive's metadata (and its tables, when a key is available).
    Inspect {
        archive: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Repository keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(clap::Args, Clone)]
struct KeyArgs {
    /// A file holding the repository password (or SAFEHOLD_PASSWORD_FILE / SAFEHOLD_PASSWORD).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// A file holding the recovery key (the printed kit works as it is).
    #[arg(long)]
    recovery_key_file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct BackupArgs {
    /// postgres://user@host:port/db or sqlite:///path/to.db
    #[arg(long)]
    source: String,
    /// The repository directory (created on first use).
    #[arg(long)]
    to: PathBuf,
    #[arg(long = "type", value_enum, default_value = "full")]
    backup_type: BackupType,
    /// zstd[:LEVEL] or none
    #[arg(long, default_value = "zstd:2")]
    compression: String,
    /// Store the archive unencrypted (it is still checksummed).
    #[arg(long)]
    no_encrypt: bool,
    /// Parallel workers (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    #[arg(long, default_value = "tenant_id")]
    tenant_column: String,
    #[arg(long, default_value = "tenants")]
    tenants_table: String,
    #[command(flatten)]
    keys: KeyArgs,
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// A repository directory or an archive file.
    #[arg(long)]
    from: PathBuf,
    /// The backup's id (default: the newest in the repository).
    #[arg(long)]
    backup: Option<String>,
    /// The empty database to restore into.
    #[arg(long)]
    target: String,
    /// Create the target PostgreSQL database if it does not exist.
    #[arg(long)]
    create: bool,
    #[arg(long)]
    jobs: Option<usize>,
    #[command(flatten)]
    keys: KeyArgs,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// A repository directory or an archive file.
    target: PathBuf,
    /// Decrypt and check every section (needs the key).
    #[arg(long)]
    deep: bool,
    #[command(flatten)]
    keys: KeyArgs,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print the repository's recovery kit, once.
    ExportRecovery {
        repo: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

#[derive(Subcommand)]
enum ConnectionCommand {
    /// Add a connection: `safehold connection add prod postgres://app@db:5432/app`.
    Add {
        name: String,
        /// postgres://user@host:port/db[?sslmode=require] or sqlite:///path/to.db
        url: String,
        /// Read the password from standard input (kept in the OS keychain).
        #[arg(long)]
        password_stdin: bool,
        /// The column that marks a tenant's rows.
        #[arg(long)]
        tenant_column: Option<String>,
        /// The table that lists the tenants.
        #[arg(long)]
        tenants_table: Option<String>,
    },
    /// List connections.
    List,
    /// Connect and report server version, size and tenant tables.
    Test { name: String },
    /// Remove a connection and its keychain entry.
    Remove { name: String },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// List backup configurations.
    List,
    /// Run a configuration's backup now and record it in the catalog.
    Run { name: String },
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));
}

fn key_sources(k: &KeyArgs) -> KeySources {
    let keychain: Arc<dyn SecretStore> = Arc::new(Keychain::default());
    KeySources { password_file: k.password_file.clone(), recovery_key_file: k.recovery_key_file.clone(), keychain: Some(keychain) }
}

/// Progress on a terminal (one updating line on stderr); plain lines when not a terminal.
fn progress_sink(json: bool) -> ProgressSink {
    if json {
        return source::no_progress();
    }
    let tty = std::io::stderr().is_terminal();
    Arc::new(move |p: Progress| {
        let table = p.table.unwrap_or_default();
        if tty {
            eprint!("\r\x1b[2K{} {}/{} {table} ({} rows)", p.phase, p.tables_done + 1, p.tables_total, p.rows);
        } else {
            eprintln!("{} {}/{} {table}", p.phase, p.tables_done + 1, p.tables_total);
        }
    })
}

fn end_progress(json: bool) {
    if !json && std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K");
    }
}

/// Cancels on Ctrl-C: the partial archive or the open transaction is dropped.
fn cancel_on_ctrl_c() -> CancelToken {
    let token = CancelToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            t.cancel();
        }
    });
    token
}

fn parse_compression(s: &str) -> Result<Option<i32>, Error> {
    match s {
        "none" => Ok(None),
        "zstd" => Ok(Some(DEFAULT_ZSTD_LEVEL)),
        other => match other.strip_prefix("zstd:").and_then(|l| l.parse::<i32>().ok()) {
            Some(l) if (1..=22).contains(&l) => Ok(Some(l)),
            _ => Err(Error::validation(format!("invalid --compression \"{other}\"; use zstd, zstd:LEVEL (1-22) or none"))),
        },
    }
}

/// Resolves `--from`: a repository (and a backup in it) or an archive file.
fn resolve_archive(from: &Path, backup: Option<&str>) -> Result<(PathBuf, Option<Repository>), Error> {
    if from.is_dir() {
        let repo = Repository::open(from)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", from.display())))?;
        let path = match backup {
            Some(id) => repo.find(id)?.0,
            None => repo.list()?.pop().map(|(p, _)| p).ok_or_else(|| Error::not_found(format!("the repository {} holds no backups yet", from.display())))?,
        };
        Ok((path, Some(repo)))
    } else {
        Ok((from.to_path_buf(), None))
    }
}

fn archives_of(target: &Path) -> Result<(Vec<PathBuf>, Option<Repository>), Error> {
    if target.is_dir() {
        let repo = Repository::open(target)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", target.display())))?;
        Ok((repo.list()?.into_iter().map(|(p, _)| p).collect(), Some(repo)))
    } else {
        Ok((vec![target.to_path_buf()], None))
    }
}

/// Archive path → SHA-256 recorded in the catalog (empty when there is no catalog).
async fn recorded_checksums(home: Option<&Path>) -> std::collections::HashMap<PathBuf, String> {
    let Some(home) = home.map(Path::to_path_buf).or_else(|| context::default_home().ok()) else { return Default::default() };
    if !home.join(safehold_core::catalog::CATALOG_FILE).exists() {
        return Default::default();
    }
    let Ok(ctx) = Ctx::open(&home).await else { return Default::default() };
    safehold_core::history::executions(&ctx, i64::MAX)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((std::fs::canonicalize(e.file_path?).ok()?, e.checksum?)))
        .collect()
}

async fn run_engine(cli: &Cli) -> Result<bool, Error> {
    let json = cli.json;
    match &cli.command {
        Command::Backup(a) => {
            let spec = SourceSpec::parse(&a.source)?;
            let keys = key_sources(&a.keys);
            let mut req = BackupRequest::new(spec);
            req.backup_type = a.backup_type;
            req.zstd_level = parse_compression(&a.compression)?;
            req.encrypt = !a.no_encrypt;
            req.tenant_column = a.tenant_column.clone();
            req.tenants_table = a.tenants_table.clone();
            if let Some(j) = a.jobs {
                req.jobs = j.max(1);
            }
            let (repo, mk) = keys.open_repository_for_backup(&a.to).await?;
            let out = backup::run(&repo, &mk, &req, &cancel_on_ctrl_c(), &progress_sink(json)).await;
            end_progress(json);
            let out = out?;
            if json {
                print_json(&out);
            } else {
                println!(
                    "{:?} backup {} of {}: {} tables, {} rows, {} bytes ({} raw) in {:.1} s\n  {}\n  sha256 {}",
                    out.backup_type, out.id, req.source_name, out.tables, out.rows, out.bytes, out.raw_bytes, out.seconds, out.archive, out.sha256
                );
                if let Some(note) = &out.note {
                    println!("  note: {note}");
                }
            }
        }
        Command::Restore(a) => {
            let target = SourceSpec::parse(&a.target)?;
            let keys = key_sources(&a.keys);
            let (path, repo) = resolve_archive(&a.from, a.backup.as_deref())?;
            let chain = keys.open_chain(&path, repo.as_ref()).await?;
            let mut created = false;
            if a.create {
                if let SourceSpec::Postgres { url } = &target {
                    created = source::postgres::create_database(url).await?;
                }
            }
            let jobs = a.jobs.unwrap_or_else(|| std::thread::available_parallelism().map(usize::from).unwrap_or(2));
            let out = restore::restore_chain(chain, &target, jobs, created, &cancel_on_ctrl_c(), &progress_sink(json)).await;
            end_progress(json);
            let out = out?;
            if json {
                print_json(&out);
            } else {
                println!("restored backup {} into {}: {} tables, {} rows in {:.1} s", out.archive_id, out.target, out.tables, out.rows, out.seconds);
            }
        }
        Command::Verify(a) => {
            let (paths, repo) = archives_of(&a.target)?;
            let keys = key_sources(&a.keys);
            // The checksums the catalog recorded when the archives were written, if it knows them.
            let recorded = recorded_checksums(cli.home.as_deref()).await;
            let mut reports = Vec::new();
            for p in &paths {
                let report = if a.deep {
                    let mut reader = ArchiveReader::open(p)?;
                    keys.unlock_archive(&mut reader, repo.as_ref()).await?;
                    verify::deep_with(reader)?
                } else {
                    let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                    verify::quick(p, recorded.get(&canonical).map(String::as_str))?
                };
                if !json {
                    println!("ok  {}  {}  sha256 {}{}", report.archive_id, report.archive, report.sha256, if report.deep { format!("  {} sections, {} rows", report.sections, report.rows) } else { String::new() });
                }
                reports.push(report);
            }
            if json {
                print_json(&reports);
            }
        }
        Command::Ls { repo } => {
            let repo = Repository::open(repo)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", repo.display())))?;
            let list = repo.list()?;
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|(p, h)| serde_json::json!({ "id": h.archive_id, "type": h.backup_type, "parent": h.parent_id, "source": h.source_name, "snapshot_time": h.snapshot_time, "archive": p.display().to_string(), "bytes": std::fs::metadata(p).map(|m| m.len()).unwrap_or(0), "encrypted": h.encrypted }))
                    .collect();
                print_json(&rows);
            } else if list.is_empty() {
                println!("no backups in {}", repo.dir.display());
            } else {
                for (p, h) in list {
                    println!("{}  {:<12} {}  {}  {}", h.archive_id, h.backup_type, h.snapshot_time, h.source_name, p.display());
                }
            }
        }
        Command::Inspect { archive, keys } => {
            let mut reader = ArchiveReader::open(archive)?;
            let header = reader.header.clone();
            let keys = key_sources(keys);
            let index = match keys.unlock_archive(&mut reader, None).await {
                Ok(()) => Some(reader.index()?),
                Err(_) => None,
            };
            if json {
                print_json(&serde_json::json!({ "header": {
                    "archive_id": header.archive_id, "repository_id": header.repository_id, "type": header.backup_type,
                    "parent": header.parent_id, "source_kind": header.source_kind, "source_name": header.source_name,
                    "source_fingerprint": header.source_fingerprint, "snapshot_time": header.snapshot_time,
                    "format_version": header.format_version, "compression": header.compression, "encrypted": header.encrypted },
                    "index": index }));
            } else {
                println!("archive {} (format {})\n  repository {}\n  {} backup of {} ({})\n  snapshot {}\n  {}, {}", header.archive_id, header.format_version, header.repository_id, header.backup_type, header.source_name, header.source_kind, header.snapshot_time, header.compression, if header.encrypted { "encrypted" } else { "not encrypted" });
                match index {
                    Some(i) => {
                        for s in i.sections.iter().filter(|s| s.kind == "table") {
                            println!("  {:<40} {:>10} rows {:>12} bytes", s.name, s.rows, s.plain_bytes);
                        }
                    }
                    None => println!("  (tables hidden: no key; give --password-file or --recovery-key-file)"),
                }
            }
        }
        Command::Key(KeyCommand::ExportRecovery { repo, keys }) => {
            let mut repository = Repository::open(repo)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", repo.display())))?;
            let mk = key_sources(keys).unlock_repository(&repository).await?;
            let kit = repository.export_recovery(&mk)?;
            print!("{kit}");
        }
        _ => return Ok(false),
    }
    Ok(true)
}

async fn run(cli: Cli) -> Result<(), Error> {
    if run_engine(&cli).await? {
        return Ok(());
    }
    let home = match cli.home.clone() {
        Some(h) => h,
        None => context::default_home()?,
    };
    let ctx = Ctx::open(&home).await?;
    match cli.command {
        Command::Connection(ConnectionCommand::Add { name, url, password_stdin, tenant_column, tenants_table }) => {
            let mut input = ConnectionInput::from_url(&name, &url)?;
            if password_stdin {
                let mut pw = String::new();
                std::io::stdin()
                    .read_to_string(&mut pw)
                    .map_err(|e| Error::io("cannot read the password from standard input", &e))?;
                input.password = Some(pw.trim_end_matches(['\r', '\n']).to_string());
            }
            input.tenant_column = tenant_column;
            input.tenants_table = tenants_table;
            let c = connections::add(&ctx, input).await?;
            if cli.json {
                print_json(&c);
            } else {
                println!("added connection \"{}\" ({}){}", c.name, c.address(), if c.has_password { ", password in the OS keychain" } else { "" });
            }
        }
        Command::Connection(ConnectionCommand::List) => {
            let list = connections::list(&ctx).await?;
            if cli.json {
                print_json(&list);
            } else if list.is_empty() {
                println!("no connections; add one with `safehold connection add NAME URL`");
            } else {
                for c in list {
                    println!("{:<24} {:<8} {}", c.name, format!("{:?}", c.kind).to_lowercase(), c.address());
                }
            }
        }
        Command::Connection(ConnectionCommand::Test { name }) => {
            let c = connections::find(&ctx, &name).await?;
            let report = connections::test(&ctx, &c.id).await?;
            if cli.json {
                print_json(&report);
            } else {
                println!("{}: {} — {} bytes, {} tables", report.address, report.server_version, report.size_bytes, report.table_count);
                if report.tenant_tables.is_empty() {
                    println!("no tenant tables (no table has a {} column)", c.tenant_column);
                }
                for t in report.tenant_tables {
                    let name = match t.schema { Some(s) => format!("{s}.{}", t.name), None => t.name };
                    match t.rows {
                        Some(r) => println!("  tenant table {name}: {r} rows"),
                        None => println!("  tenant table {name}"),
                    }
                }
            }
        }
        Command::Connection(ConnectionCommand::Remove { name }) => {
            let c = connections::find(&ctx, &name).await?;
            connections::remove(&ctx, &c.id).await?;
            if !cli.json {
                println!("removed connection \"{}\"", c.name);
            }
        }
        Command::Config(ConfigCommand::List) => {
            let list = configurations::list(&ctx).await?;
            if cli.json {
                print_json(&list);
            } else {
                for c in list {
                    println!(
                        "{:<28} {:<12} {:<14} {} ({}), keep {} days, {}",
                        c.configuration_name,
                        format!("{:?}", c.backup_type).to_lowercase(),
                        c.schedule_cron,
                        c.schedule_description,
                        if c.is_active { "active" } else { "inactive" },
                        c.retention_days,
                        c.storage_location
                    );
                }
            }
        }
        Command::Config(ConfigCommand::Run { name }) => {
            let config = configurations::list(&ctx)
                .await?
                .into_iter()
                .find(|c| c.configuration_name == name || c.id == name)
                .ok_or_else(|| Error::not_found(format!("no configuration is named \"{name}\"; `safehold config list` shows them")))?;
            let id = safehold_core::runs::enqueue(&ctx, &config.id).await?;
            let done = safehold_core::runs::run(&ctx, &id, &cancel_on_ctrl_c()).await?;
            if cli.json {
                print_json(&done);
            } else {
                println!("{} backup of \"{}\": {:?}{}", done.backup_type, name, done.status, done.file_path.as_deref().map(|p| format!(" — {p}")).unwrap_or_default());
            }
            if let Some(e) = done.error_message {
                return Err(Error::new(safehold_core::ErrorCode::Database, e));
            }
        }
        Command::Backup(_) | Command::Restore(_) | Command::Verify(_) | Command::Ls { .. } | Command::Inspect { .. } | Command::Key(_) => {}
        Command::Demo => {
            let report = demo::ensure(&ctx, true).await?;
            if cli.json {
                print_json(&report);
            } else if report.created {
                println!("demo platform ready at {} ({} tenants, {} rows)", report.database_path, report.tenants, report.rows);
            } else {
                println!("the demo platform is already set up at {}", report.database_path);
            }
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                print_json(&serde_json::json!({ "error": e }));
            } else {
                eprintln!("error: {}", e.message);
            }
            ExitCode::FAILURE
        }
    }
}
