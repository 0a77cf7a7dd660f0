#!/usr/bin/env bash
# A private, throwaway PostgreSQL cluster for tests.
#   scripts/pg-cluster.sh start DIR PORT AUTH [PASSWORD [SERVER-OPTIONS]]   (AUTH: trust | scram-sha-256;
#     SERVER-OPTIONS e.g. "-c wal_level=logical")
#   scripts/pg-cluster.sh stop DIR
# PG_BIN=DIR uses another version's server binaries (scripts/pg-versions.sh).
# DIR must be a new empty directory; the cluster and its socket live there.
set -euo pipefail
cmd=$1 dir=$2
# PG_BIN: another version's binaries (scripts/pg-versions.sh); remembered in DIR for stop.
bin=${PG_BIN:-$(cat "$dir/bin" 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -n "$bin" ] || { echo "pg-cluster: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
as=()
if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi
case "$cmd" in
  start)
    port=$3 auth=$4 password=${5:-postgres} options=${6:-}
    echo "$bin" > "$dir/bin"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    printf '%s\n' "$password" > "$dir/pwfile"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir/pwfile"; fi
    "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth="$auth" --pwfile="$dir/pwfile" -E UTF8 --no-sync >/dev/null
    rm -f "$dir/pwfile"
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off $options" start >/dev/null
    ;;
  stop)
    [ -d "$dir/data" ] && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    ;;
esac
