#!/usr/bin/env bash
# Builds Safehold's installable bundles: the desktop app with its icon and menu entry, and the
# `safehold` command line beside it.
#   scripts/package.sh            -> release build: target/package/safehold_<version>_amd64.deb
#                                    and target/package/safehold_<version>_amd64.AppImage
#   scripts/package.sh --debug    -> the same from the debug binaries (what `make test` checks)
#   scripts/package.sh --out DIR  -> both written into DIR
# Install the .deb with: sudo apt install ./target/package/safehold_<version>_amd64.deb
# Or run the AppImage as it is: ./target/package/safehold_<version>_amd64.AppImage
#
# Both are assembled here rather than by Tauri's bundler (`tauri build`): the bundler comes with
# Tauri's CLI, and its AppImage step downloads linuxdeploy and the AppImage runtime from GitHub,
# which the machines that build and test Safehold cannot reach. The .deb holds what Tauri's would:
# the binaries, a desktop entry, hicolor icons and dependencies computed from the binaries'
# libraries. The AppImage holds what linuxdeploy would put in one (the libraries the binaries and
# WebKit's helper processes need, except those of scripts/appimage-base-libs; GLib's settings
# schemas; the image loaders), with our own runtime at its head (crates/appimage: it unpacks the
# image once per version instead of mounting it with FUSE).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --out) out="$2"; shift ;;
    *) echo "package: unknown argument $1 (use --debug, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done

target="${CARGO_TARGET_DIR:-target}"
out="${out:-$target/package}"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)

if [ "$profile" = release ]; then
  scripts/deps.sh build
  (cd ui && npx vite build --logLevel warn)
  echo "package: building the release binaries (a first release build takes 20-30 minutes on two cores)"
  cargo build --release -p safehold-app -p safehold-cli -p safehold-appimage
elif [ ! -x "$target/debug/safehold-app" ] || [ ! -x "$target/debug/safehold" ] || [ ! -x "$target/debug/appimage-runtime" ]; then
  [ -f ui/dist/index.html ] || (cd ui && npx vite build --logLevel warn)
  cargo build -p safehold-app -p safehold-cli -p safehold-appimage
fi
bin="$target/$profile"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/safehold_${version}_${arch}"
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/applications" "$root/usr/share/doc/safehold"
install -m 0755 "$bin/safehold-app" "$root/usr/bin/safehold-app"
install -m 0755 "$bin/safehold" "$root/usr/bin/safehold"
for size in 32x32 128x128; do
  install -D -m 0644 "icons/$size.png" "$root/usr/share/icons/hicolor/$size/apps/safehold.png"
done
install -D -m 0644 icons/icon.png "$root/usr/share/icons/hicolor/512x512/apps/safehold.png"

cat > "$root/usr/share/applications/safehold.desktop" <<EOF
[Desktop Entry]
Type=Application
Name=Safehold
GenericName=Backup Management
Comment=Back up, verify, restore and migrate a multi-tenant platform's data
Exec=safehold-app
Icon=safehold
Terminal=false
Categories=Utility;Archiving;Database;
Keywords=backup;restore;postgresql;tenant;
StartupWMClass=safehold-app
EOF
chmod 0644 "$root/usr/share/applications/safehold.desktop"

cat > "$root/usr/share/doc/safehold/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Safehold
License: Apache-2.0

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$root/usr/share/doc/safehold/copyright"

# Dependencies from the libraries the binaries link (dpkg-shlibdeps reads the system's shlibs),
# plus the tray's indicator library, which the app opens at run time.
mkdir -p "$stage/debian"
printf 'Source: safehold\n\nPackage: safehold\nArchitecture: any\n' > "$stage/debian/control"
shlib=$(cd "$stage" && dpkg-shlibdeps -O --ignore-missing-info "$root/usr/bin/safehold-app" "$root/usr/bin/safehold" 2> >(grep -v "should already be installed" >&2) \
  | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlib" ] || { echo "package: dpkg-shlibdeps found no libraries for the binaries" >&2; exit 1; }
depends="${shlib:+$shlib, }libayatana-appindicator3-1"
installed=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat > "$root/DEBIAN/control" <<EOF
Package: safehold
Version: $version
Section: admin
Priority: optional
Architecture: $arch
Maintainer: The Safehold developers <safehold@localhost>
Installed-Size: $installed
Depends: $depends
Recommends: gnome-keyring | kwalletmanager
Description: back up, verify, restore and migrate a multi-tenant platform's data
 Safehold backs up PostgreSQL and SQLite databases into encrypted, verified archives on a local
 folder or object storage, restores a whole database, some tables or one tenant, and copies,
 merges and exports tenants. The desktop app (safehold-app) and the command line (safehold).
EOF

mkdir -p "$out"
deb="$out/safehold_${version}_${arch}.deb"
# (The debug package, which only the tests build, is compressed lightly: it is large and thrown away.)
if [ "$profile" = release ]; then compress=(-Zxz); else compress=(-Zgzip -z1); fi
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >/dev/null
case "$deb" in /*) shown="$deb" ;; *) shown="./$deb" ;; esac
echo "package: $deb ($(du -h "$deb" | cut -f1)); install it with: sudo apt install $shown"

# ---- The AppImage ----------------------------------------------------------------------------
multiarch=$(gcc -print-multiarch)
appdir="$stage/Safehold.AppDir"
lib="$appdir/usr/lib"
install -d -m 0755 "$appdir/usr/bin" "$lib"
cp -a "$root/usr/share" "$appdir/usr/"
for b in safehold-app safehold; do objcopy --strip-debug "$bin/$b" "$appdir/usr/bin/$b"; done
ln -s usr/share/applications/safehold.desktop "$appdir/safehold.desktop"
install -m 0644 icons/128x128.png "$appdir/safehold.png"
install -m 0644 icons/128x128.png "$appdir/.DirIcon"

# WebKit's helper processes, where libwebkit2gtk looks for them once the "/usr" in its paths is
# made "././" below: relative to usr/ of the AppDir, the folder AppRun starts the app in.
webkit_helpers="$(pkg-config --variable=libdir webkit2gtk-4.1)/webkit2gtk-4.1"
install -d -m 0755 "$appdir$webkit_helpers"
cp -a "$webkit_helpers"/WebKit*Process "$webkit_helpers/injected-bundle" "$appdir$webkit_helpers/"
# The image loaders (PNG and JPEG are built into gdk-pixbuf; SVG icons need a loader) with their
# list, in which AppRun writes the AppDir's place; GLib's settings schemas (the file chooser has
# its own); GIO's settings back end (dconf), the only GIO module the app loads.
pixbuf_dir=$(pkg-config --variable=gdk_pixbuf_moduledir gdk-pixbuf-2.0)
install -d -m 0755 "$lib/gdk-pixbuf/loaders" "$lib/gio/modules"
cp -a "$pixbuf_dir"/*.so "$lib/gdk-pixbuf/loaders/"
sed "s|$pixbuf_dir|@APPDIR@/usr/lib/gdk-pixbuf/loaders|g" "$(pkg-config --variable=gdk_pixbuf_cache_file gdk-pixbuf-2.0)" > "$lib/gdk-pixbuf/loaders.cache.in"
install -D -m 0644 /usr/share/glib-2.0/schemas/gschemas.compiled "$appdir/usr/share/glib-2.0/schemas/gschemas.compiled"
cp -a "/usr/lib/$multiarch/gio/modules/libdconfsettings.so" "$lib/gio/modules/"
# The tray's indicator library, which the app opens at run time.
cp -L "/usr/lib/$multiarch/libayatana-appindicator3.so.1" "$lib/"

# Every library these programs need, except the base system's, copied into usr/lib until none is
# missing (ldd lists a program's libraries transitively; the ones copied are checked in turn).
base=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' scripts/appimage-base-libs)
elves() {
  find "$appdir" -type f \( -perm -u+x -o -name '*.so*' \) -print0 | while IFS= read -r -d '' f; do
    [ "$(head -c4 "$f" | tr -d '\0' | tail -c3)" = ELF ] && printf '%s\n' "$f"
  done
}
while :; do
  added=0
  while IFS= read -r elf; do
    while read -r name arrow path _; do
      [ "$arrow" = "=>" ] || continue
      grep -qxF "$name" <<<"$base" && continue
      if [ "$path" = not ]; then echo "package: $elf needs $name, which this machine lacks" >&2; exit 1; fi
      [ -e "$lib/$name" ] && continue
      install -m 0644 "$(readlink -f "$path")" "$lib/$name"
      added=1
    done < <(LD_LIBRARY_PATH="$lib" ldd "$elf" 2>/dev/null || true)
  done < <(elves)
  [ "$added" = 1 ] || break
done
# libwebkit2gtk knows its helpers by absolute paths under /usr: made relative ("././" has as many
# bytes as "/usr"), they are found under the AppDir's usr/, where AppRun starts the app.
sed -i 's|/usr|././|g' "$lib/libwebkit2gtk-4.1.so.0"
install -m 0755 scripts/AppRun "$appdir/AppRun"

# The image: SquashFS (zstd; lighter for the debug build, which only the tests make) after the
# runtime, with the type-2 AppImage magic ("AI", 2) at byte 8 of the runtime's ELF header.
if [ "$profile" = release ]; then level=19; else level=3; fi
mksquashfs "$appdir" "$stage/image.squashfs" -comp zstd -Xcompression-level "$level" -root-owned -noappend -quiet >/dev/null
appimage="$out/safehold_${version}_${arch}.AppImage"
cat "$bin/appimage-runtime" "$stage/image.squashfs" > "$appimage.partial"
printf 'AI\002' | dd of="$appimage.partial" bs=1 seek=8 conv=notrunc status=none
chmod 0755 "$appimage.partial"
mv "$appimage.partial" "$appimage"
case "$appimage" in /*) shown="$appimage" ;; *) shown="./$appimage" ;; esac
echo "package: $appimage ($(du -h "$appimage" | cut -f1)); run it with: $shown (the command line: $shown --cli --help)"
