//! `safehold storage …`: where backups are kept.

use crate::prelude::*;

pub(crate) async fn run(ctx: &Ctx, json: bool, cmd: StorageCommand) -> Result<(), Error> {
    use safehold_core::storage;
    match cmd {
        StorageCommand::Add { name, location, default, endpoint, region, quota, access_key_id } => {
            let credentials = access_key_id.map(credentials_from_stdin).transpose()?;
            let s = storage::add(ctx, storage::RemoteStorageInput { name, url: location.clone(), endpoint, region, quota_bytes: quota, credentials, is_default: default }).await?;
            if json {
                print_json(&s);
            } else {
                println!("storage \"{}\" added ({location})", s.storage_name);
            }
        }
        StorageCommand::List => {
            let list = storage::list(ctx).await?;
            if json {
                print_json(&list);
            } else {
                for s in list {
                    let health = match s.last_health_ok {
                        Some(true) => format!("healthy ({} ms)", s.last_health_latency_ms.unwrap_or(0)),
                        Some(false) => format!("FAILING: {}", s.last_health_message.unwrap_or_default()),
                        None => "not checked yet".into(),
                    };
                    let path = s.storage_config.get("path").or_else(|| s.storage_config.get("url")).and_then(|p| p.as_str()).unwrap_or("").to_string();
                    println!("{:<24} {:<6} {}  {} used{}  {health}", s.storage_name, format!("{:?}", s.storage_type).to_lowercase(), path, s.used_space, s.total_capacity.map(|t| format!(" of {t}")).unwrap_or_default());
                }
            }
        }
        StorageCommand::Check { name } => {
            let h = storage::check(ctx, &name).await?;
            if json {
                print_json(&h);
            } else {
                println!("{}: {}", h.storage_name, h.message);
            }
            if !h.ok {
                return Err(Error::new(safehold_core::ErrorCode::Io, format!("the storage \"{}\" failed its health check: {}", h.storage_name, h.message)));
            }
        }
        StorageCommand::Set { name, default, deactivate, activate, quota, access_key_id } => {
            let credentials = access_key_id.map(credentials_from_stdin).transpose()?;
            let is_active = if deactivate { Some(false) } else if activate { Some(true) } else { None };
            let s = storage::update(ctx, &name, storage::StorageChange { make_default: default, is_active, quota_bytes: quota, credentials }).await?;
            if json {
                print_json(&s);
            } else {
                println!("storage \"{}\" changed{}{}", s.storage_name, if s.is_default { " (default)" } else { "" }, if s.is_active { "" } else { " (inactive)" });
            }
        }
        StorageCommand::Keys { name } => {
            let c = safehold_core::keys::custody::custody(ctx, &name).await?;
            if json {
                print_json(&c);
            } else if let Some(problem) = &c.problem {
                println!("{name}: keys not known: {problem}");
            } else if !c.has_repository {
                println!("{name}: no backups yet (the first backup creates the repository and its key)");
            } else {
                let mut holders = Vec::new();
                if !c.super_admins.is_empty() {
                    holders.push(format!("the super admins {}", c.super_admins.join(", ")));
                }
                if c.in_keychain {
                    holders.push("this workstation's keychain (anyone using Safehold here can restore)".to_string());
                } else if c.password && c.super_admins.is_empty() {
                    holders.push("its repository password (given with --password-file; not kept on this workstation)".to_string());
                }
                println!("{name}: backups open with {}", if holders.is_empty() { "the recovery kit only".to_string() } else { holders.join("; ") });
                if !c.pending.is_empty() {
                    println!("  not yet sealed to {} (done at the next super admin sign-in while the storage is reachable)", c.pending.join(", "));
                }
                if !c.former.is_empty() {
                    println!("  still sealed to former super admins {} (removed at the next super admin sign-in)", c.former.join(", "));
                }
                println!("  recovery kit: {}", if c.recovery_exported { "exported" } else { "not exported yet: safehold key export-recovery <the storage's location>" });
            }
        }
        StorageCommand::Usage { name } => {
            let u = storage::refresh_usage(ctx, &name).await?;
            if json {
                print_json(&u);
            } else {
                println!("{}: {} bytes in {} archives{}", u.storage_name, u.used_space, u.archives, u.total_capacity.map(|t| format!(", filesystem {t} bytes ({} available)", u.available.unwrap_or(0))).unwrap_or_default());
            }
        }
        StorageCommand::Remove { name } => {
            storage::remove(ctx, &name).await?;
            if !json {
                println!("storage \"{name}\" removed from the catalog (its files were kept)");
            }
        }
    }
    Ok(())
}

/// A cloud storage's credentials: this access key id, and its secret read from standard input.
pub(crate) fn credentials_from_stdin(access_key_id: String) -> Result<safehold_core::storage::StorageCredentials, Error> {
    let mut secret = String::new();
    std::io::stdin().read_to_string(&mut secret).map_err(|e| Error::io("cannot read the secret access key from standard input", &e))?;
    Ok(safehold_core::storage::StorageCredentials { access_key_id: Some(access_key_id), secret_access_key: Some(secret.trim().to_string()), service_account_key: None })
}
