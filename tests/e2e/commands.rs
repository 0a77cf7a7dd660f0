//! The commands the UI may call are the ones the desktop shell registers: `ui/src/api/commands.ts`
//! is generated from `tauri::generate_handler![…]` in `src-tauri/src/main.rs`, and the UI's one
//! `call` takes only those names, so a command renamed or removed in the shell fails the UI's type
//! check. This test fails when the generated file is stale (`SAFEHOLD_WRITE_BINDINGS=1` rewrites
//! it, as `make bindings` does), or when a `#[tauri::command]` is defined but not registered.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The names inside `generate_handler![…]`, in order.
fn registered(main_rs: &str) -> Vec<String> {
    let start = main_rs.find("generate_handler![").expect("the shell registers its commands with generate_handler!") + "generate_handler![".len();
    let end = start + main_rs[start..].find(']').expect("the list ends");
    main_rs[start..end].split(',').map(|c| c.trim().trim_start_matches("commands::").to_string()).filter(|c| !c.is_empty()).collect()
}

/// The functions marked `#[tauri::command]` in the shell's commands module.
fn defined(commands_rs: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut marked = false;
    for line in commands_rs.lines() {
        let l = line.trim();
        if l == "#[tauri::command]" {
            marked = true;
        } else if marked && l.starts_with("pub ") {
            let after = l.split("fn ").nth(1).expect("a command is a function");
            out.push(after.split(['(', '<']).next().expect("its name").to_string());
            marked = false;
        }
    }
    out
}

fn typescript(names: &[String]) -> String {
    let mut out = String::from(
        "// Generated from the commands the desktop shell registers (src-tauri/src/main.rs) by\n\
         // tests/e2e/commands.rs. Do not edit by hand: run `make bindings` after changing the list.\n\n\
         /** A command the desktop shell answers. */\nexport type Command =\n",
    );
    for (i, n) in names.iter().enumerate() {
        out.push_str(&format!("  | \"{n}\"{}\n", if i + 1 == names.len() { ";" } else { "" }));
    }
    out
}

#[test]
fn the_ui_knows_exactly_the_commands_the_shell_registers() {
    let main_rs = std::fs::read_to_string(root().join("src-tauri/src/main.rs")).expect("the shell's main.rs");
    let commands_rs = std::fs::read_to_string(root().join("src-tauri/src/commands.rs")).expect("the shell's commands.rs");
    let names = registered(&main_rs);
    assert!(names.len() > 40 && names.contains(&"startup_status".to_string()), "the list was read: {names:?}");
    let mut unregistered: Vec<String> = defined(&commands_rs).into_iter().filter(|d| !names.contains(d)).collect();
    unregistered.sort();
    assert!(unregistered.is_empty(), "commands defined but not registered in generate_handler!: {unregistered:?}");
    let path = root().join("ui/src/api/commands.ts");
    let want = typescript(&names);
    if std::env::var_os("SAFEHOLD_WRITE_BINDINGS").is_some() {
        std::fs::write(&path, &want).expect("write commands.ts");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "{} is stale: run `make bindings`", path.display());
}

#[test]
fn the_parsers_read_what_they_are_given() {
    assert_eq!(registered("x.invoke_handler(tauri::generate_handler![\n  commands::a,\n  commands::b_c,\n])"), ["a", "b_c"]);
    assert_eq!(defined("#[tauri::command]\npub async fn one(x: u8) {}\npub fn not_a_command() {}\n#[tauri::command]\npub fn two<R>() {}"), ["one", "two"]);
    assert!(typescript(&["a".into(), "b".into()]).ends_with("  | \"a\"\n  | \"b\";\n"));
}
