//! `safehold backup`: a database backed up into a repository, as one archive.

use crate::prelude::*;

/// An ad-hoc backup into a repository.
pub(crate) async fn run(a: &BackupArgs, json: bool, place: &Path, keys: KeySources) -> Result<(), Error> {
    let spec = SourceSpec::parse(&a.source)?;
    let mut req = BackupRequest::new(spec);
    req.signer = keys.writer.clone();
    req.backup_type = a.backup_type;
    req.zstd_level = parse_compression(&a.compression)?;
    req.encrypt = !a.no_encrypt;
    req.tenant_column = a.tenant_column.clone();
    req.tenants_table = a.tenants_table.clone();
    if let Some(j) = a.jobs {
        req.jobs = j.max(1);
    }
    // Sealed to the repository's public key: an existing repository needs no password.
    let (repo, mk) = keys.open_repository_for_sealed_backup(place).await?;
    if a.all_databases {
        return server(a, json, req, &repo, mk.as_ref()).await;
    }
    let out = backup::run_with(&repo, mk.as_ref(), &req, &cancel_on_ctrl_c(), &progress_sink(json)).await;
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
        for w in &out.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(())
}

/// `backup --all-databases`: the server's databases and globals, as one set.
async fn server(a: &BackupArgs, json: bool, each: BackupRequest, repo: &Repository, mk: Option<&safehold_core::archive::SecretKey>) -> Result<(), Error> {
    use safehold_core::servers;
    let SourceSpec::Postgres { url } = &each.source else {
        return Err(Error::validation("--all-databases backs up a PostgreSQL server: --source postgres://user@host:5432/"));
    };
    let req = servers::ServerBackupRequest { url: url.clone(), exclude: a.exclude_databases.clone(), with_passwords: a.with_passwords, each: each.clone() };
    let out = servers::backup(repo, mk, &req, &cancel_on_ctrl_c(), &progress_sink(json)).await;
    end_progress(json);
    let out = out?;
    if json {
        print_json(&out);
    } else {
        for d in &out.databases {
            println!("  {:<30} {} tables, {} rows, {} bytes  (backup {})", d.database, d.tables, d.rows, d.bytes, &d.archive_id[..8]);
        }
        println!("server backup {} of {}: {} databases, {} roles, {} memberships in {:.1} s\n  {}", out.set_id, source::redact(url), out.databases.len(), out.roles, out.memberships, out.seconds, out.archive);
        for w in &out.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(())
}

pub(crate) fn parse_compression(s: &str) -> Result<Option<i32>, Error> {
    match s {
        "none" => Ok(None),
        "zstd" => Ok(Some(DEFAULT_ZSTD_LEVEL)),
        other => match other.strip_prefix("zstd:").and_then(|l| l.parse::<i32>().ok()) {
            Some(l) if (1..=22).contains(&l) => Ok(Some(l)),
            _ => Err(Error::validation(format!("invalid --compression \"{other}\"; use zstd, zstd:LEVEL (1-22) or none"))),
        },
    }
}
