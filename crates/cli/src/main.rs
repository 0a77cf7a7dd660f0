//! `safehold`: the Safehold engine from a terminal, for servers and scripts.

mod args;
mod commands;
mod common;
mod output;
mod prelude;

use prelude::*;

async fn run(cli: Cli) -> Result<(), Error> {
    if commands::engine::run(&cli).await? {
        return Ok(());
    }
    let ctx = open_catalog(&cli).await?;
    let json = cli.json;
    let (home, endpoint, region, operator) = (cli.home.clone(), cli.endpoint.clone(), cli.region.clone(), cli.operator.clone());
    match cli.command {
        Command::Connection(cmd) => commands::connection::run(&ctx, json, cmd).await,
        Command::Config(cmd) => commands::config::run(&ctx, json, cmd).await,
        Command::Storage(cmd) => commands::storage::run(&ctx, json, cmd).await,
        Command::Schedule(cmd) => commands::schedule::run(&ctx, json, cmd).await,
        Command::Catalog(cmd) => commands::catalog::run(&ctx, json, cmd, home.as_deref(), endpoint.as_deref(), region.as_deref(), operator.as_deref()).await,
        Command::Tenant(cmd) => commands::tenant::run(&ctx, json, cmd).await,
        Command::Operator(cmd) => commands::operator::run(&ctx, &cmd, json).await,
        Command::History(a) => commands::history::run(&ctx, json, a).await,
        Command::Audit(a) => commands::history::audit(&ctx, json, a).await,
        Command::Demo { postgres } => commands::demo::run(&ctx, json, postgres).await,
        Command::Protect(cmd) => commands::protect::configured(&ctx, json, &cmd).await,
        // These act on a repository directly (commands::engine), before the catalog's commands.
        Command::Backup(_) | Command::Restore(_) | Command::Verify(_) | Command::Ls { .. } | Command::Inspect { .. } | Command::Key(_) => Ok(()),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    // Diagnostics on stderr only when asked for (`SAFEHOLD_LOG=debug`); they never carry secrets.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("SAFEHOLD_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => output::exit_code(),
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
