//! `safehold`: the Safehold engine from a terminal, for servers and scripts.

use std::io::Read;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use safehold_core::connections::{self, ConnectionInput};
use safehold_core::{configurations, context, demo, Ctx, Error};

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
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));
}

async fn run(cli: Cli) -> Result<(), Error> {
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

#[tokio::main]
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
