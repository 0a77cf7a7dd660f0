//! The installable bundles (`make package`, here from the debug binaries), built by
//! scripts/package.sh: the Debian package, unpacked into an empty root as dpkg would install it and
//! run from there; the AppImage, run as a user runs one (its app through WebDriver, as the other
//! end-to-end tests drive the app).

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

#[tokio::test]
async fn the_debian_package_and_the_appimage_hold_the_app_and_the_cli_and_both_run_from_them() {
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

    appimage(out.path(), &said).await;
}

/// The AppImage: an ELF program with the type-2 magic, which unpacks itself once into the user's
/// cache and runs the app (or the CLI) with the libraries it carries.
async fn appimage(out: &Path, said: &str) {
    let version = env!("CARGO_PKG_VERSION");
    let image = out.join(format!("safehold_{version}_amd64.AppImage"));
    assert!(said.contains(&format!("run it with: {}", image.display())), "the script says how to run it: {said}");
    let bytes = std::fs::read(&image).expect("the AppImage was written");
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(&bytes[8..11], b"AI\x02", "the type-2 AppImage magic");
    assert_eq!(std::fs::metadata(&image).expect("image").permissions().mode() & 0o777, 0o755);
    drop(bytes);

    // Run as a user runs it: the app, the CLI by --cli and by a link named `safehold`.
    let cache = tempfile::tempdir().expect("cache");
    let from = |cmd: &mut Command| run(cmd.env("XDG_CACHE_HOME", cache.path()).env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY")).trim().to_owned();
    assert_eq!(from(Command::new(&image).arg("--version")), format!("safehold-app {version}"));
    assert_eq!(from(Command::new(&image).args(["--cli", "--version"])), format!("safehold {version}"));
    let links = tempfile::tempdir().expect("links");
    std::os::unix::fs::symlink(&image, links.path().join("safehold")).expect("link");
    assert_eq!(from(&mut Command::new(links.path().join("safehold")).arg("--version")), format!("safehold {version}"));
    let unpacked: Vec<PathBuf> = std::fs::read_dir(cache.path().join("safehold/appimage")).expect("unpacked").flatten().map(|e| e.path()).collect();
    assert_eq!(unpacked.len(), 1, "one folder for the version, unpacked once: {unpacked:?}");
    let appdir = &unpacked[0];

    // The AppDir as the AppImage format has it: AppRun, a desktop entry and its icon at the top.
    let desktop = std::fs::read_to_string(appdir.join("safehold.desktop")).expect("desktop entry at the top");
    assert!(desktop.contains("Exec=safehold-app") && desktop.contains("Icon=safehold"), "{desktop}");
    assert!(appdir.join("safehold.png").is_file() && appdir.join(".DirIcon").is_file());
    assert_eq!(std::fs::metadata(appdir.join("AppRun")).expect("AppRun").permissions().mode() & 0o777, 0o700);

    // Every program and library in it finds what it needs in the AppImage, except the libraries
    // of the base system (scripts/appimage-base-libs); WebKit's helpers are inside, and
    // libwebkit2gtk no longer points at the system's.
    let base: Vec<String> = std::fs::read_to_string(repo().join("scripts/appimage-base-libs"))
        .expect("base list")
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let lib = appdir.join("usr/lib");
    let mut checked = 0;
    for elf in elves(appdir) {
        let listed = run(Command::new("ldd").arg(&elf).env("LD_LIBRARY_PATH", &lib));
        for line in listed.lines().filter(|l| l.contains("=>")) {
            let (name, path) = line.split_once("=>").map(|(n, p)| (n.trim(), p.split_whitespace().next().unwrap_or_default())).expect("ldd line");
            assert!(path != "not", "{} needs {name}, which the AppImage lacks", elf.display());
            assert!(Path::new(path).starts_with(appdir) || base.iter().any(|b| b == name), "{} takes {name} from the system ({path}), not from the AppImage", elf.display());
        }
        checked += 1;
    }
    assert!(checked > 20, "the app, the CLI, WebKit's helpers and the libraries: {checked}");
    let helpers = lib.join("x86_64-linux-gnu/webkit2gtk-4.1");
    for helper in ["WebKitWebProcess", "WebKitNetworkProcess", "injected-bundle/libwebkit2gtkinjectedbundle.so"] {
        assert!(helpers.join(helper).is_file(), "{helper} is in the AppImage");
    }
    let webkit = std::fs::read(lib.join("libwebkit2gtk-4.1.so.0")).expect("libwebkit2gtk in the AppImage");
    assert!(!webkit.windows(8).any(|w| w == b"/usr/lib"), "libwebkit2gtk still names the system's /usr/lib");

    // The app from the AppImage, driven as the other tests drive it: its dashboard shows, and the
    // web process that draws it is the AppImage's own.
    let turn = super::ONE_APP.lock().await;
    let home = tempfile::tempdir().expect("home");
    let app = super::App::start_program(&image, home, turn, true, &[("XDG_CACHE_HOME", cache.path().display().to_string())]).await;
    app.wait_text("h1", "Backup Management").await;
    let web_processes: Vec<PathBuf> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path().join("exe")).ok())
        .filter(|exe| exe.file_name().is_some_and(|n| n == "WebKitWebProcess"))
        .collect();
    assert!(web_processes.iter().any(|exe| exe.starts_with(appdir)), "a WebKitWebProcess of the AppImage runs: {web_processes:?}");
    drop(app);

    on_a_minimal_debian(&image);
}

/// The AppImage on a minimal Debian 12 that has neither GTK nor WebKit, only the libraries the
/// AppImage takes from the system (scripts/minimal-root.sh: debootstrap, chroot; root only):
/// the app and the CLI answer, and the app opens its window with the AppImage's WebKit.
fn on_a_minimal_debian(image: &Path) {
    let version = env!("CARGO_PKG_VERSION");
    let root_user = run(Command::new("id").arg("-u")).trim() == "0";
    if !root_user {
        eprintln!("the AppImage on a minimal Debian root was not tried: it needs root (chroot and mounts)");
        return;
    }
    let script = repo().join("scripts/minimal-root.sh");
    let root = PathBuf::from(run(Command::new(&script).arg("path")).trim());
    assert!(!root.join("usr/lib/x86_64-linux-gnu/libgtk-3.so.0").exists() && !root.join("usr/lib/x86_64-linux-gnu/libwebkit2gtk-4.1.so.0").exists(), "the root has no GTK or WebKit of its own");
    let answer = |args: &[&str]| run(Command::new(&script).arg("run").arg(image).arg("60").args(args)).trim().to_owned();
    assert_eq!(answer(&["--version"]), format!("safehold-app {version}"));
    assert_eq!(answer(&["--cli", "--version"]), format!("safehold {version}"));

    // Its window on this display, for 30 s: the app says it is open, and draws with the
    // AppImage's WebKit from inside the root.
    let mut app = Command::new(&script).arg("run").arg(image).arg("30").stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().expect("run the AppImage in the root");
    let stdout = app.stdout.take().expect("stdout");
    let mut open = false;
    let mut web_process = None;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
        if line.starts_with("Safehold is open") {
            open = true;
            // The web process starts with the window.
            for _ in 0..100 {
                web_process = std::fs::read_dir("/proc").expect("/proc").flatten().filter_map(|e| std::fs::read_link(e.path().join("exe")).ok()).find(|exe| exe.starts_with(&root) && exe.file_name().is_some_and(|n| n == "WebKitWebProcess"));
                if web_process.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }
    let _ = app.wait();
    assert!(open, "the app opened its window on a system without GTK or WebKit");
    assert!(web_process.is_some(), "its WebKitWebProcess ran from the AppImage, inside the root");
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    assert!(!mounts.contains(&root.display().to_string()), "the root's mounts are gone after the run");
}

/// The ELF files under `dir` (programs and libraries), links not followed.
fn elves(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("folder").flatten() {
            let kind = entry.file_type().expect("type");
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() {
                let mut head = [0u8; 4];
                let is_elf = std::fs::File::open(entry.path()).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head)).is_ok() && &head == b"\x7fELF";
                if is_elf {
                    found.push(entry.path());
                }
            }
        }
    }
    found
}
