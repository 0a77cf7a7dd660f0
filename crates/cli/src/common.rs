//! What the commands share: the catalog opened and signed in to, locations and keys resolved,
//! passwords read, Ctrl-C turned into a cancel.

use crate::prelude::*;

/// Opens the catalog; once operators exist, signs in the one named by --operator.
pub(crate) async fn open_catalog(cli: &Cli) -> Result<Ctx, Error> {
    let home = match cli.home.clone() {
        Some(h) => h,
        None => context::default_home()?,
    };
    let ctx = Ctx::open(&home).await?;
    // A command killed earlier (kill -9, power loss) left its rows `running`: they are marked
    // interrupted now (never a job a live process runs), and the partial files it left removed.
    if !matches!(cli.command, Command::Schedule(ScheduleCommand::Run { .. })) {
        let r = safehold_core::scheduler::recover_dead(&ctx).await?;
        if r.backups + r.restores + r.migrations + r.partial_files > 0 {
            eprintln!(
                "note: found what an earlier run left when it was stopped: {} backups, {} restores and {} migrations marked interrupted; {} partial files removed",
                r.backups, r.restores, r.migrations, r.partial_files
            );
        }
    }
    if !matches!(cli.command, Command::Operator(OperatorCommand::Setup { .. })) {
        sign_in_if_needed(&ctx, cli.operator.as_deref()).await?;
    }
    Ok(ctx)
}

/// Once the catalog has operators, signs in `operator` (its password prompted, or read from
/// SAFEHOLD_OPERATOR_PASSWORD_FILE).
pub(crate) async fn sign_in_if_needed(ctx: &Ctx, operator: Option<&str>) -> Result<(), Error> {
    if !operators::set_up(&ctx.pool).await? {
        return Ok(());
    }
    let name = operator.filter(|n| !n.trim().is_empty()).ok_or_else(|| {
        Error::new(
            ErrorCode::PermissionDenied,
            "this catalog has operators: give --operator NAME (or SAFEHOLD_OPERATOR); the password is prompted, or read from SAFEHOLD_OPERATOR_PASSWORD_FILE",
        )
    })?;
    let file = std::env::var_os("SAFEHOLD_OPERATOR_PASSWORD_FILE").map(PathBuf::from);
    let pw = read_password(file.as_deref(), &format!("password of {name}"), false)?;
    operators::sign_in(ctx, name, &pw, false).await?;
    Ok(())
}

/// A password: from `file`, else prompted on the terminal (`confirm`: asked twice).
pub(crate) fn read_password(file: Option<&Path>, prompt: &str, confirm: bool) -> Result<String, Error> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| Error::io(format!("cannot read the password file {}", f.display()), &e))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::validation(format!("{prompt}: no terminal to ask on; give the password in a file (--password-file, or SAFEHOLD_OPERATOR_PASSWORD_FILE)")));
    }
    let pw = rpassword::prompt_password(format!("{prompt}: ")).map_err(|e| Error::io("cannot read the password", &e))?;
    if confirm && rpassword::prompt_password("again: ").map_err(|e| Error::io("cannot read the password", &e))? != pw {
        return Err(Error::validation("the two passwords differ"));
    }
    Ok(pw)
}

/// A repository or archive location as given: a path, an object storage URL (connected with
/// --endpoint/--region if given), or a storage registered in the catalog — `storage:NAME`, or its
/// plain name where no file of that name is here — with its settings and keychain credentials,
/// read from the catalog already open (one sign-in).
pub(crate) async fn location_in(cli: &Cli, ctx: &Ctx, given: &Path) -> Result<PathBuf, Error> {
    let text = given.to_string_lossy().to_string();
    // The storage, looked up once, and the path below it.
    let registered = match text.strip_prefix("storage:") {
        Some(name) => {
            let (name, rest) = name.split_once('/').unwrap_or((name, ""));
            Some((safehold_core::storage::find(ctx, name).await?, rest))
        }
        None if is_a_name(&text) && !given.exists() => match safehold_core::storage::find(ctx, &text).await {
            Ok(store) => Some((store, "")),
            Err(e) if e.code == ErrorCode::NotFound => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    if let Some((store, rest)) = registered {
        let base = safehold_core::storage::location(ctx, &store).await?;
        return Ok(if rest.is_empty() { base } else { base.join(rest) });
    }
    location_with(None, cli.endpoint.as_deref(), cli.region.as_deref(), None, given).await
}

/// Whether `text` can be a registered name rather than a path or URL (no separator, no scheme).
fn is_a_name(text: &str) -> bool {
    !text.is_empty() && !text.contains(['/', '\\']) && !text.contains("://") && !text.starts_with('.')
}

/// A restore's target as given: a `postgres://` URL, `sqlite://` path, or the name (or id) of a
/// registered connection — its URL with the password from the keychain.
pub(crate) async fn target_in(ctx: &Ctx, given: &str) -> Result<String, Error> {
    if !is_a_name(given.trim()) {
        return Ok(given.to_string());
    }
    let conn = match safehold_core::connections::find(ctx, given.trim()).await {
        Ok(c) => c,
        Err(e) if e.code == ErrorCode::NotFound => {
            return Err(Error::validation(format!(
                "--target {given}: give a postgres:// URL, a sqlite:// path, or the name of a registered connection (`safehold connection list` shows them)"
            )))
        }
        Err(e) => return Err(e),
    };
    Ok(match safehold_core::connections::source_of(ctx, &conn.id).await?.0 {
        source::SourceSpec::Postgres { url } => url,
        source::SourceSpec::Sqlite { path } => format!("sqlite://{}", path.display()),
    })
}

pub(crate) async fn location_with(home: Option<&Path>, endpoint: Option<&str>, region: Option<&str>, operator: Option<&str>, given: &Path) -> Result<PathBuf, Error> {
    let text = given.to_string_lossy().to_string();
    if let Some(name) = text.strip_prefix("storage:") {
        let home = match home {
            Some(h) => h.to_path_buf(),
            None => context::default_home()?,
        };
        let ctx = Ctx::open(&home).await?;
        sign_in_if_needed(&ctx, operator).await?;
        let (name, rest) = name.split_once('/').unwrap_or((name, ""));
        let store = safehold_core::storage::find(&ctx, name).await?;
        let base = safehold_core::storage::location(&ctx, &store).await?;
        return Ok(if rest.is_empty() { base } else { base.join(rest) });
    }
    if safehold_core::remote::is_remote(given) && (endpoint.is_some() || region.is_some()) {
        let settings = safehold_core::remote::Settings {
            endpoint: endpoint.map(str::to_string),
            region: region.map(str::to_string),
            allow_http: endpoint.map(|e| e.starts_with("http://")),
            ..Default::default()
        };
        safehold_core::remote::connect(&text, &settings)?;
    }
    Ok(given.to_path_buf())
}

pub(crate) fn key_sources(k: &KeyArgs) -> KeySources {
    let keychain: Arc<dyn SecretStore> = Arc::new(Keychain::default());
    KeySources { password_file: k.password_file.clone(), recovery_key_file: k.recovery_key_file.clone(), keychain: Some(keychain), trust_unsigned: k.trust_unsigned, ..Default::default() }
}

/// Cancels on Ctrl-C: the partial archive or the open transaction is dropped.
pub(crate) fn cancel_on_ctrl_c() -> CancelToken {
    let token = CancelToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            t.cancel();
        }
    });
    token
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read the {what} file {}", path.display()), &e))?;
    serde_json::from_str(&text).map_err(|e| Error::validation(format!("the {what} file {} is not valid: {e}", path.display())))
}
