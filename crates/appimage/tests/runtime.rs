//! The AppImage runtime on small images made here: this test's runtime binary followed by a
//! SquashFS image that `mksquashfs` (as scripts/package.sh uses it) makes of a folder written by
//! the test, whose `AppRun` reports what it was started with.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const RUNTIME: &str = env!("CARGO_BIN_EXE_appimage-runtime");

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("mode");
}

/// An AppImage of a folder holding `AppRun`, a data file, a link to it and a program.
fn make_image(dir: &Path, greeting: &str) -> PathBuf {
    let appdir = dir.join("Test.AppDir");
    write(
        &appdir.join("AppRun"),
        "#!/bin/sh\nprintf '%s\\n' \"APPIMAGE=$APPIMAGE\" \"APPDIR=$APPDIR\" \"ARGV0=$ARGV0\" \"OWD=$OWD\" \"PWD=$(pwd)\"\nfor a in \"$@\"; do printf 'ARG=%s\\n' \"$a\"; done\ncat \"$APPDIR/usr/share/greeting.txt\"\n\"$APPDIR/usr/bin/tool\"\n",
        0o755,
    );
    write(&appdir.join("usr/share/greeting.txt"), greeting, 0o644);
    write(&appdir.join("usr/bin/tool"), "#!/bin/sh\necho tool ran\n", 0o755);
    std::os::unix::fs::symlink("usr/share/greeting.txt", appdir.join("greeting.txt")).expect("link");
    let squashfs = dir.join("image.squashfs");
    let made = Command::new("mksquashfs")
        .arg(&appdir)
        .arg(&squashfs)
        .args(["-comp", "zstd", "-root-owned", "-noappend", "-quiet"])
        .output()
        .expect("mksquashfs (package squashfs-tools; scripts/deps.sh installs it)");
    assert!(made.status.success(), "mksquashfs: {}", String::from_utf8_lossy(&made.stderr));
    let file = dir.join("Test.AppImage");
    let mut bytes = std::fs::read(RUNTIME).expect("runtime");
    bytes.extend(std::fs::read(&squashfs).expect("image"));
    std::fs::write(&file, bytes).expect("AppImage");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("mode");
    file
}

fn start(image: &Path, cache: &Path, cwd: &Path, args: &[&str]) -> Output {
    retried(|| Command::new(image).args(args).current_dir(cwd).env("XDG_CACHE_HOME", cache).stdin(Stdio::null()).output())
}

/// Starts a program written by this test. A program just written can be "busy" for an instant:
/// another test's thread that forks at that moment holds its file open until it execs.
fn retried<T>(run: impl Fn() -> std::io::Result<T>) -> T {
    for _ in 0..50 {
        match run() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => std::thread::sleep(std::time::Duration::from_millis(20)),
            other => return other.expect("start the AppImage"),
        }
    }
    panic!("the AppImage stayed busy")
}

fn said(out: &Output, key: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("AppRun did not report {key}: {stdout}")).to_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn a_first_start_unpacks_the_image_once_into_the_cache_and_runs_its_apprun_with_the_appimage_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "hello from the image\n");
    let cache = dir.path().join("cache");
    let cwd = dir.path().join("elsewhere");
    std::fs::create_dir(&cwd).expect("cwd");

    let first = start(&image, &cache, &cwd, &["--version", "two words"]);
    assert!(first.status.success(), "{first:?}");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("unpacking this version into"), "the first start says it unpacks: {stderr}");
    let appdir = PathBuf::from(said(&first, "APPDIR"));
    assert_eq!(appdir.parent(), Some(cache.join("safehold/appimage").as_path()));
    assert!(appdir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{}-", env!("CARGO_PKG_VERSION")))), "{}", appdir.display());
    assert_eq!(PathBuf::from(said(&first, "APPIMAGE")), image);
    assert_eq!(PathBuf::from(said(&first, "OWD")), cwd);
    assert_eq!(said(&first, "ARGV0"), image.to_string_lossy());
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("ARG=--version\nARG=two words\n"), "the arguments pass unchanged: {stdout}");
    assert!(stdout.contains("hello from the image\ntool ran\n"), "{stdout}");

    // What was unpacked: owner-only folders and files, programs executable, the link kept.
    assert_eq!(mode(&cache.join("safehold")), 0o700);
    assert_eq!(mode(&appdir), 0o700);
    assert_eq!(mode(&appdir.join("usr/share")), 0o700);
    assert_eq!(mode(&appdir.join("AppRun")), 0o700);
    assert_eq!(mode(&appdir.join("usr/share/greeting.txt")), 0o600);
    assert_eq!(std::fs::read_link(appdir.join("greeting.txt")).expect("link"), Path::new("usr/share/greeting.txt"));

    // A second start uses the folder as it is.
    let second = start(&image, &cache, &cwd, &[]);
    assert!(second.status.success(), "{second:?}");
    assert_eq!(PathBuf::from(said(&second, "APPDIR")), appdir);
    assert!(!String::from_utf8_lossy(&second.stderr).contains("unpacking"), "{second:?}");

    // Another image (another version's content) gets a folder of its own; both stay usable.
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).expect("other");
    let other = make_image(&other_dir, "another build\n");
    let third = start(&other, &cache, &cwd, &[]);
    assert!(String::from_utf8_lossy(&third.stdout).contains("another build"), "{third:?}");
    assert_ne!(PathBuf::from(said(&third, "APPDIR")), appdir);
    assert!(String::from_utf8_lossy(&start(&image, &cache, &cwd, &[]).stdout).contains("hello from the image"));
}

#[test]
fn the_runtime_options_extract_and_give_the_offset_and_others_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "extracted\n");
    let cache = dir.path().join("cache");

    let offset = start(&image, &cache, dir.path(), &["--appimage-offset"]);
    assert!(offset.status.success(), "{offset:?}");
    let runtime_len = std::fs::metadata(RUNTIME).expect("runtime").len();
    assert_eq!(String::from_utf8_lossy(&offset.stdout).trim(), runtime_len.to_string(), "the image starts where the runtime's file ends");

    let out = start(&image, &cache, dir.path(), &["--appimage-extract"]);
    assert!(out.status.success(), "{out:?}");
    let root = dir.path().join("squashfs-root");
    assert_eq!(std::fs::read_to_string(root.join("usr/share/greeting.txt")).expect("extracted"), "extracted\n");
    assert!(std::fs::read_dir(dir.path()).expect("dir").flatten().all(|e| !e.file_name().to_string_lossy().contains(".partial-")), "no unfinished folder left");
    let again = start(&image, &cache, dir.path(), &["--appimage-extract"]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("squashfs-root exists already"), "{again:?}");
    assert!(!cache.exists(), "extracting does not touch the cache");

    let version = start(&image, &cache, dir.path(), &["--appimage-version"]);
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("Safehold AppImage runtime {}", env!("CARGO_PKG_VERSION")));
    let mount = start(&image, &cache, dir.path(), &["--appimage-mount"]);
    let stderr = String::from_utf8_lossy(&mount.stderr);
    assert!(!mount.status.success() && stderr.contains("--appimage-mount is not an option of this runtime"), "{stderr}");
    assert!(!cache.exists(), "a refused option unpacks nothing");
}

#[test]
fn a_damaged_or_incomplete_file_is_refused_with_what_to_do_and_nothing_is_left_in_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "whole\n");
    let cache = dir.path().join("cache");

    // Cut short, as an interrupted download.
    let bytes = std::fs::read(&image).expect("image");
    let offset = usize::try_from(std::fs::metadata(RUNTIME).expect("runtime").len()).expect("size");
    let cut = dir.path().join("Cut.AppImage");
    write(&cut, "", 0o755);
    std::fs::write(&cut, &bytes[..offset + 200]).expect("cut");
    let out = start(&cut, &cache, dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(stderr.contains("is incomplete") && stderr.contains("download it again"), "{stderr}");

    // The runtime alone, without an image.
    let bare = dir.path().join("Bare.AppImage");
    std::fs::copy(RUNTIME, &bare).expect("copy");
    let out = start(&bare, &cache, dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("holds no application image"), "{stderr}");

    // The image's table of files damaged (the first block's header says 32 KiB, compressed): refused,
    // and no folder of it in the cache.
    let mut bad = bytes.clone();
    let mut at = [0u8; 8];
    at.copy_from_slice(&bytes[offset + 64..offset + 72]);
    let inodes = offset + usize::try_from(u64::from_le_bytes(at)).expect("offset");
    bad[inodes] = 0xff;
    bad[inodes + 1] = 0x7f;
    let damaged = dir.path().join("Damaged.AppImage");
    std::fs::write(&damaged, &bad).expect("damaged");
    std::fs::set_permissions(&damaged, std::fs::Permissions::from_mode(0o755)).expect("mode");
    let out = start(&damaged, &cache, dir.path(), &[]);
    assert!(!out.status.success(), "a damaged image does not start: {out:?}");
    let left: Vec<_> = std::fs::read_dir(cache.join("safehold/appimage")).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "nothing half-unpacked is left: {left:?}");
}

#[test]
fn starts_at_the_same_time_all_run_one_complete_folder_and_an_unfinished_one_is_removed_by_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "raced\n");
    for round in 0..5 {
        let cache = dir.path().join(format!("cache-{round}"));
        let starts: Vec<_> = (0..4)
            .map(|_| retried(|| Command::new(&image).env("XDG_CACHE_HOME", &cache).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()))
            .collect();
        let outs: Vec<Output> = starts.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
        let folders: std::collections::BTreeSet<String> = outs
            .iter()
            .map(|o| {
                assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("raced"), "round {round}: {o:?}");
                said(o, "APPDIR")
            })
            .collect();
        assert_eq!(folders.len(), 1, "round {round}: {folders:?}");
        let left: Vec<String> = std::fs::read_dir(cache.join("safehold/appimage")).expect("cache").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(left.len(), 1, "round {round}: one folder and no unfinished one: {left:?}");
    }

    // A start killed while unpacking leaves `<key>.partial-<pid>`: the next start removes it.
    let cache = dir.path().join("cache-0");
    let appdir = PathBuf::from(said(&start(&image, &cache, dir.path(), &[]), "APPDIR"));
    let dead = (1_000_000..u32::MAX).find(|pid| !Path::new(&format!("/proc/{pid}")).exists()).expect("a free pid");
    let unfinished = cache.join(format!("safehold/appimage/{}.partial-{dead}", appdir.file_name().and_then(|n| n.to_str()).expect("name")));
    write(&unfinished.join("AppRun"), "half", 0o700);
    let out = start(&image, &cache, dir.path(), &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("an unpacking left unfinished by an earlier start that was stopped"), "{out:?}");
    assert!(!unfinished.exists());
    assert!(appdir.join("AppRun").is_file(), "the complete folder stays");
}
