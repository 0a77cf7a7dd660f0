//! The runtime at the head of Safehold's AppImage (scripts/package.sh writes it there).
//!
//! An AppImage is a program (its runtime) followed by a SquashFS image of the application's folder
//! (the AppDir, with `AppRun`, a desktop entry and an icon at its top). The runtime that
//! `appimagetool` puts there mounts the image with FUSE at every start: that needs libfuse2, which
//! current Debian and Ubuntu installs lack, and the tool comes from GitHub, which the machines that
//! build Safehold cannot reach. This runtime instead unpacks the image **once per version** into the
//! user's cache folder (`$XDG_CACHE_HOME/safehold/appimage/<version>-<digest>`, folders 0700, files
//! 0700 or 0600) and starts its `AppRun` from there, with the variables every AppImage sets:
//! `APPIMAGE` (this file), `APPDIR` (the unpacked folder), `ARGV0` (the name it was started by) and
//! `OWD` (the folder it was started in). It answers the runtime options users and tools know:
//! `--appimage-extract`, `--appimage-extract-and-run`, `--appimage-offset`, `--appimage-help`,
//! `--appimage-version`; the others (mounting, update information, signatures) are refused by name.
//!
//! Nothing is used half-unpacked: an unpacking goes into `<version>.partial-<pid>` and is renamed
//! into place when it is complete. Two starts at once each unpack and the first rename wins; an
//! unpacking left by a start that was killed is removed by the next start, which says so.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitCode};

use backhand::{FilesystemReader, InnerNode};

const VERSION: &str = env!("CARGO_PKG_VERSION");

const HELP: &str = "\
Safehold's AppImage. Run it to open the app; `--cli ARGS…` (or a link to it named `safehold`)
runs the command line instead.

The first start of a version unpacks it into $XDG_CACHE_HOME/safehold/appimage (~/.cache when
XDG_CACHE_HOME is not set), which takes a few seconds; later starts use that folder. No FUSE is
needed. Remove the folder of a version you no longer use to free its space.

Options of the runtime itself:
  --appimage-extract          unpack the image into ./squashfs-root and stop
  --appimage-extract-and-run  what a start does anyway (unpack once, then run)
  --appimage-offset           the byte offset of the image in this file
  --appimage-version          this runtime's version
  --appimage-help             this text
";

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    match run(argv0, args.collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Safehold AppImage: {e}");
            ExitCode::from(127)
        }
    }
}

fn run(argv0: OsString, args: Vec<OsString>) -> Result<(), String> {
    let first = args.first().and_then(|a| a.to_str()).unwrap_or_default().to_owned();
    match first.as_str() {
        "--appimage-help" => {
            print!("{HELP}");
            return Ok(());
        }
        "--appimage-version" => {
            println!("Safehold AppImage runtime {VERSION}");
            return Ok(());
        }
        _ => {}
    }
    let image = std::env::current_exe().map_err(|e| format!("cannot find the AppImage's own file: {e}"))?;
    let payload = Payload::open(&image)?;
    match first.as_str() {
        "--appimage-offset" => {
            println!("{}", payload.offset);
            Ok(())
        }
        "--appimage-extract" => {
            if args.len() > 1 {
                return Err("--appimage-extract takes no pattern here: it unpacks the whole image into ./squashfs-root".into());
            }
            let dest = PathBuf::from("squashfs-root");
            if dest.symlink_metadata().is_ok() {
                return Err("./squashfs-root exists already: remove it, or run --appimage-extract in another folder".into());
            }
            let partial = PathBuf::from(format!("squashfs-root.partial-{}", std::process::id()));
            payload.unpack_into(&partial)?;
            fs::rename(&partial, &dest).map_err(|e| {
                let _ = fs::remove_dir_all(&partial);
                format!("cannot rename {} to ./squashfs-root: {e}", partial.display())
            })?;
            println!("squashfs-root");
            Ok(())
        }
        "--appimage-extract-and-run" => start(&payload, argv0, args[1..].to_vec()),
        other if other.starts_with("--appimage-") => Err(format!(
            "{other} is not an option of this runtime (it unpacks the image once and needs no FUSE): see --appimage-help"
        )),
        _ => start(&payload, argv0, args),
    }
}

/// The image inside the AppImage file: where it starts, and the name of its unpacked folder.
struct Payload {
    image: PathBuf,
    offset: u64,
    key: String,
}

impl Payload {
    /// Finds the SquashFS image after the runtime's ELF file (which ends with its section headers)
    /// and checks that the file holds all of it.
    fn open(image: &Path) -> Result<Payload, String> {
        let shown = image.display();
        let mut f = File::open(image).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let len = f.metadata().map_err(|e| format!("cannot read {shown}: {e}"))?.len();
        let mut head = [0u8; 64];
        f.read_exact(&mut head).map_err(|e| format!("cannot read {shown}: {e}"))?;
        if &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
            return Err(format!("{shown} is not a 64-bit little-endian program: not Safehold's AppImage"));
        }
        let u16_at = |at: usize| u64::from(u16::from_le_bytes([head[at], head[at + 1]]));
        let mut shoff = [0u8; 8];
        shoff.copy_from_slice(&head[0x28..0x30]);
        let offset = u64::from_le_bytes(shoff).saturating_add(u16_at(0x3a).saturating_mul(u16_at(0x3c)));
        let no_image = || format!("{shown} holds no application image after its first {offset} bytes: it is damaged or not Safehold's AppImage; download it again");
        let mut superblock = [0u8; 96];
        f.seek(SeekFrom::Start(offset)).map_err(|_| no_image())?;
        f.read_exact(&mut superblock).map_err(|_| no_image())?;
        if &superblock[..4] != b"hsqs" {
            return Err(no_image());
        }
        let mut used = [0u8; 8];
        used.copy_from_slice(&superblock[40..48]);
        let end = offset.saturating_add(u64::from_le_bytes(used));
        if end > len {
            return Err(format!("{shown} is incomplete ({len} of at least {end} bytes): download it again"));
        }
        // The folder's name: this runtime's version and a digest of the image's superblock (its
        // size, time and table positions) and of its last 8 KiB (its directory and id tables).
        let tail_at = end.saturating_sub(8192).max(offset);
        let mut tail = vec![0u8; usize::try_from(end - tail_at).unwrap_or(0)];
        f.seek(SeekFrom::Start(tail_at)).and_then(|_| f.read_exact(&mut tail)).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let mut digest = DefaultHasher::new();
        superblock.hash(&mut digest);
        tail.hash(&mut digest);
        Ok(Payload { image: image.to_owned(), offset, key: format!("{VERSION}-{:016x}", digest.finish()) })
    }

    /// Unpacks the whole image into `dest`, a folder this creates; on an error `dest` is removed.
    fn unpack_into(&self, dest: &Path) -> Result<(), String> {
        let done = self.unpack(dest);
        if done.is_err() {
            let _ = fs::remove_dir_all(dest);
        }
        done
    }

    fn unpack(&self, dest: &Path) -> Result<(), String> {
        let file = File::open(&self.image).map_err(|e| format!("cannot read {}: {e}", self.image.display()))?;
        let image = FilesystemReader::from_reader_with_offset(BufReader::new(file), self.offset).map_err(|e| {
            format!("the application image inside {} cannot be read ({e}): the file is damaged; download it again", self.image.display())
        })?;
        DirBuilder::new().mode(0o700).create(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
        // Parents before their children; an entry is written only into a folder this unpacking
        // made (never through a link of the image, never outside `dest`).
        let mut nodes: Vec<_> = image.files().collect();
        nodes.sort_by(|a, b| a.fullpath.cmp(&b.fullpath));
        let mut folders: HashSet<PathBuf> = HashSet::from([dest.to_owned()]);
        for node in nodes {
            let relative = inside(&node.fullpath)?;
            if relative.as_os_str().is_empty() {
                continue;
            }
            let path = dest.join(&relative);
            if !path.parent().is_some_and(|p| folders.contains(p)) {
                return Err(format!("the image's entry {} is not inside one of its folders: the file is damaged", node.fullpath.display()));
            }
            let failed = |e: io::Error| format!("cannot write {}: {e}", path.display());
            match &node.inner {
                InnerNode::Dir(_) => {
                    DirBuilder::new().mode(0o700).create(&path).map_err(failed)?;
                    folders.insert(path);
                }
                InnerNode::File(file) => {
                    let mode = if node.header.permissions & 0o111 != 0 { 0o700 } else { 0o600 };
                    let mut out = OpenOptions::new().write(true).create_new(true).mode(mode).open(&path).map_err(failed)?;
                    io::copy(&mut image.file(file).reader(), &mut out).map_err(failed)?;
                }
                InnerNode::Symlink(link) => std::os::unix::fs::symlink(&link.link, &path).map_err(failed)?,
                _ => {
                    return Err(format!("the image's entry {} is a device, pipe or socket, which an application does not hold", node.fullpath.display()))
                }
            }
        }
        Ok(())
    }
}

/// An entry's path inside the image as a relative path, refused when it would lead outside.
fn inside(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(name),
            _ => return Err(format!("the image's entry {} leads outside the image: the file is damaged", path.display())),
        }
    }
    Ok(out)
}

/// `$XDG_CACHE_HOME/safehold/appimage`, or `~/.cache/…`.
fn cache_folder() -> Result<PathBuf, String> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| Path::new(v).is_absolute()) {
        Some(cache) => PathBuf::from(cache),
        None => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or("neither XDG_CACHE_HOME nor HOME is set: set one, or use --appimage-extract")?).join(".cache"),
    };
    Ok(base.join("safehold").join("appimage"))
}

/// Removes the unpackings that a start which no longer runs left unfinished.
fn remove_unfinished(cache: &Path) {
    let Ok(entries) = fs::read_dir(cache) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, pid)) = name.rsplit_once(".partial-") else { continue };
        if pid.parse::<u32>().is_ok_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()) && fs::remove_dir_all(entry.path()).is_ok() {
            eprintln!("Safehold: removed {}, an unpacking left unfinished by an earlier start that was stopped", entry.path().display());
        }
    }
}

/// Unpacks the image into the cache unless this version is there already, then becomes its
/// `AppRun`.
fn start(payload: &Payload, argv0: OsString, args: Vec<OsString>) -> Result<(), String> {
    let cache = cache_folder()?;
    DirBuilder::new().recursive(true).mode(0o700).create(&cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    remove_unfinished(&cache);
    let appdir = cache.join(&payload.key);
    if !appdir.is_dir() {
        eprintln!("Safehold: unpacking this version into {} (once per version; a few seconds)", appdir.display());
        let partial = cache.join(format!("{}.partial-{}", payload.key, std::process::id()));
        let _ = fs::remove_dir_all(&partial);
        payload.unpack_into(&partial)?;
        if let Err(e) = fs::rename(&partial, &appdir) {
            let _ = fs::remove_dir_all(&partial);
            // Another start unpacked the same version at the same time: its folder is complete.
            if !appdir.is_dir() {
                return Err(format!("cannot rename {} to {}: {e}", partial.display(), appdir.display()));
            }
        }
    }
    let apprun = appdir.join("AppRun");
    let mut command = Command::new(&apprun);
    command.args(args).env("APPIMAGE", &payload.image).env("APPDIR", &appdir).env("ARGV0", argv0);
    if let Ok(owd) = std::env::current_dir() {
        command.env("OWD", owd);
    }
    let err = command.exec();
    Err(format!("cannot start {}: {err}", apprun.display()))
}
