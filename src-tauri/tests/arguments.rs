//! The app's binary answers `--version` and `--help` without opening a window (a packaged install
//! is checked so), with no display at all. This integration test also makes `cargo test -p
//! safehold-app` build the binary itself (`CARGO_BIN_EXE_…`): `make test` builds the app, the CLI
//! and every test binary in one cargo run, with one set of features (scripts/test.sh).

use std::process::Command;

fn answer(arg: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_safehold-app")).arg(arg).env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY").output().expect("run the app");
    assert!(out.status.success(), "safehold-app {arg}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_app_answers_version_and_help_without_a_window() {
    assert_eq!(answer("--version").trim(), format!("safehold-app {}", env!("CARGO_PKG_VERSION")));
    let help = answer("--help");
    assert!(help.contains("Run it without arguments to open its window") && help.contains("safehold --help"), "{help}");
}
