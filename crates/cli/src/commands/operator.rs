//! `safehold operator …`: operators and their roles.

use crate::prelude::*;

pub(crate) async fn run(ctx: &Ctx, cmd: &OperatorCommand, json: bool) -> Result<(), Error> {
    let show = |o: &operators::Operator| {
        let state = if !o.is_active { "disabled" } else if o.locked_until.as_deref().is_some_and(|u| u > safehold_core::catalog::now().as_str()) { "locked" } else { "active" };
        println!("{:<24} {:<18} {:<9} last sign-in {}", o.name, o.role, state, o.last_sign_in.as_deref().unwrap_or("never"));
    };
    match cmd {
        OperatorCommand::Setup { name, password_file } => {
            let pw = read_password(password_file.as_deref(), &format!("new password of {name}"), true)?;
            let a = operators::create_first(ctx, name, &pw).await?;
            println!("{} is the first super admin; catalog commands now need --operator", a.name);
        }
        OperatorCommand::Add { name, role, password_file } => {
            let role = operators::Role::parse(role)?;
            let pw = read_password(password_file.as_deref(), &format!("new password of {name}"), true)?;
            let o = operators::add(ctx, name, role, &pw).await?;
            if json { print_json(&o) } else { show(&o) }
        }
        OperatorCommand::List => {
            let list = operators::list(ctx).await?;
            if json { print_json(&list) } else { list.iter().for_each(show) }
        }
        OperatorCommand::SetRole { name, role } => show(&operators::set_role(ctx, name, operators::Role::parse(role)?).await?),
        OperatorCommand::Disable { name } => show(&operators::set_active(ctx, name, false).await?),
        OperatorCommand::Enable { name } => show(&operators::set_active(ctx, name, true).await?),
        OperatorCommand::Remove { name } => {
            operators::remove(ctx, name).await?;
            println!("removed {name}");
        }
        OperatorCommand::Password { current_password_file, password_file } => {
            let current = read_password(current_password_file.as_deref(), "current password", false)?;
            let pw = read_password(password_file.as_deref(), "new password", true)?;
            operators::change_password(ctx, &current, &pw).await?;
            println!("password changed");
        }
        OperatorCommand::Reset { name, password_file } => {
            let pw = read_password(password_file.as_deref(), &format!("new password of {name}"), true)?;
            let o = operators::reset_password(ctx, name, &pw).await?;
            if json { print_json(&o) } else { show(&o) }
        }
        OperatorCommand::IdleTimeout { seconds } => {
            operators::set_idle_timeout(ctx, *seconds).await?;
            println!("app sessions end after {seconds} s idle");
        }
    }
    Ok(())
}
