#!/usr/bin/env bash
# Builds the Debian package of Safehold: the desktop app with its icon and menu entry, and the
# `safehold` command line beside it on the PATH.
#   scripts/package.sh            -> release build, target/package/safehold_<version>_amd64.deb
#   scripts/package.sh --debug    -> the same from the debug binaries (what `make test` checks)
#   scripts/package.sh --out DIR  -> the .deb written into DIR
# Install it with: sudo apt install ./target/package/safehold_<version>_amd64.deb
#
# The package is assembled with dpkg-deb rather than Tauri's bundler (`tauri build`): the bundler
# comes with Tauri's CLI, and its AppImage step downloads linuxdeploy from GitHub, which the
# machines that build and test Safehold cannot reach. The .deb holds what Tauri's would: the
# binary, a desktop entry, hicolor icons and dependencies computed from the binaries' libraries.
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
  cargo build --release -p safehold-app -p safehold-cli
elif [ ! -x "$target/debug/safehold-app" ] || [ ! -x "$target/debug/safehold" ]; then
  [ -f ui/dist/index.html ] || (cd ui && npx vite build --logLevel warn)
  cargo build -p safehold-app -p safehold-cli
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
