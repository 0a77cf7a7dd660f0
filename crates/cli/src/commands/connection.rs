//! `safehold connection …`: the platform databases Safehold backs up.

use crate::prelude::*;

pub(crate) async fn run(ctx: &Ctx, json: bool, cmd: ConnectionCommand) -> Result<(), Error> {
    match cmd {
        ConnectionCommand::Add { name, url, password_stdin, tenant_column, tenants_table } => {
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
            let c = connections::add(ctx, input).await?;
            if json {
                print_json(&c);
            } else {
                println!("added connection \"{}\" ({}){}", c.name, c.address(), if c.has_password { ", password in the OS keychain" } else { "" });
            }
        }
        ConnectionCommand::List => {
            let list = connections::list(ctx).await?;
            if json {
                print_json(&list);
            } else if list.is_empty() {
                println!("no connections; add one with `safehold connection add NAME URL`");
            } else {
                for c in list {
                    println!("{:<24} {:<8} {}", c.name, format!("{:?}", c.kind).to_lowercase(), c.address());
                }
            }
        }
        ConnectionCommand::Test { name } => {
            let c = connections::find(ctx, &name).await?;
            let report = connections::test(ctx, &c.id).await?;
            if json {
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
        ConnectionCommand::Remove { name } => {
            let c = connections::find(ctx, &name).await?;
            connections::remove(ctx, &c.id).await?;
            if !json {
                println!("removed connection \"{}\"", c.name);
            }
        }
    }
    Ok(())
}
