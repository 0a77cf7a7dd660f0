//! The Debian package (`make package`, here from the debug binaries): built by scripts/package.sh,
//! unpacked into an empty root as dpkg would install it, and run from there.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field<'a>(control: &'a str, name: &str) -> &'a str {
    control.lines().find_map(|l| l.trim_start().strip_prefix(&format!("{name}: "))).unwrap_or_else(|| panic!("no {name} in the control file:\n{control}"))
}

#[test]
fn the_debian_package_holds_the_app_and_the_cli_and_both_run_from_an_unpacked_install() {
    let out = tempfile::tempdir().expect("tempdir");
    let mut build = Command::new(repo().join("scripts/package.sh"));
    build.current_dir(repo()).args(["--debug", "--out"]).arg(out.path());
    if let Some(app) = std::env::var_os("SAFEHOLD_APP_BINARY") {
        // The binaries make test built (its target directory may be another one).
        build.env("CARGO_TARGET_DIR", Path::new(&app).parent().and_then(Path::parent).expect("target dir"));
    }
    let said = run(&mut build);
    let version = env!("CARGO_PKG_VERSION");
    let deb = std::fs::read_dir(out.path()).expect("out").filter_map(|e| e.ok()).map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "deb")).expect("a .deb was written");
    let name = deb.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    assert!(name.starts_with(&format!("safehold_{version}_")), "{name}");
    assert!(said.contains(&format!("sudo apt install {}", deb.display())), "the script says how to install it: {said}");

    // The control file: the package, its version, what it needs from the system.
    let control = run(Command::new("dpkg-deb").arg("-f").arg(&deb));
    assert_eq!(field(&control, "Package"), "safehold");
    assert_eq!(field(&control, "Version"), version);
    let depends: Vec<String> = field(&control, "Depends").split(',').map(|d| d.split_whitespace().next().unwrap_or_default().to_owned()).collect();
    for needed in ["libwebkit2gtk-4.1-0", "libgtk-3-0", "libc6", "libayatana-appindicator3-1"] {
        assert!(depends.iter().any(|d| d == needed), "Depends lacks {needed}: {depends:?}");
    }
    // Every dependency is a package this machine (Debian 12, as the README's) has: apt would install it.
    for d in &depends {
        let alternatives: Vec<&str> = d.split('|').map(str::trim).collect();
        let ok = alternatives.iter().any(|p| Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed")));
        assert!(ok, "{d} is not a package of this system");
    }

    // Unpacked as dpkg installs it: the app, the CLI on the PATH, the menu entry and the icon.
    let root = tempfile::tempdir().expect("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root.path()));
    let files = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for line in files.lines() {
        assert!(line.contains("root/root"), "owned by root in the package: {line}");
    }
    for bin in ["usr/bin/safehold-app", "usr/bin/safehold"] {
        let mode = std::fs::metadata(root.path().join(bin)).unwrap_or_else(|e| panic!("{bin}: {e}")).permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{bin}");
    }
    let desktop = std::fs::read_to_string(root.path().join("usr/share/applications/safehold.desktop")).expect("desktop entry");
    let entry = |k: &str| desktop.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or_else(|| panic!("no {k} in the desktop entry"));
    assert_eq!(entry("Type"), "Application");
    assert!(root.path().join("usr/bin").join(entry("Exec").split_whitespace().next().expect("Exec")).is_file(), "Exec names a binary of the package");
    assert!(root.path().join(format!("usr/share/icons/hicolor/128x128/apps/{}.png", entry("Icon"))).is_file(), "Icon names an icon of the package");
    assert!(root.path().join("usr/share/doc/safehold/copyright").is_file());

    // Both run from there, as a user would after installing.
    let cli = run(Command::new(root.path().join("usr/bin/safehold")).arg("--version"));
    assert_eq!(cli.trim(), format!("safehold {version}"));
    let app = run(Command::new(root.path().join("usr/bin/safehold-app")).arg("--version"));
    assert_eq!(app.trim(), format!("safehold-app {version}"));
}
