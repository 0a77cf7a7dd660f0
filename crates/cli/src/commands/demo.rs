//! `safehold demo`: the embedded demo platform.

use crate::prelude::*;

/// Creates the demo platform if it is not there (and, with `--postgres`, its copy in PostgreSQL).
pub(crate) async fn run(ctx: &Ctx, json: bool, postgres: Option<String>) -> Result<(), Error> {
    let report = demo::ensure(ctx, true).await?;
    let copied = match &postgres {
        Some(url) => {
            let rows = demo::copy_to_postgres(&demo::database_path(&ctx.home), url).await?;
            let mut input = ConnectionInput::from_url(demo::DEMO_POSTGRES_CONNECTION, url)?;
            input.password = None;
            connections::add(ctx, input).await?;
            Some(rows)
        }
        None => None,
    };
    if json {
        let mut out = serde_json::to_value(&report).unwrap_or_default();
        if let (Some(rows), Some(map)) = (copied, out.as_object_mut()) {
            map.insert("postgres_rows".into(), rows.into());
        }
        print_json(&out);
    } else {
        if report.created {
            println!("demo platform ready at {} ({} tenants, {} rows)", report.database_path, report.tenants, report.rows);
        } else {
            println!("the demo platform is already set up at {}", report.database_path);
        }
        if let Some(rows) = copied {
            println!("copied into PostgreSQL ({rows} rows) and registered as the connection \"{}\"", demo::DEMO_POSTGRES_CONNECTION);
        }
    }
    Ok(())
}
