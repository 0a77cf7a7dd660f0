#!/usr/bin/env python3
"""make bench, part four: real applications' schemas — many small objects (issue 26, item 2).

A backup and a restore of a schema of many tables, foreign keys and indexes and few rows cost
what their objects cost, not their data: catalog reads, statements, round trips. On the schemas
the engine tests use (pretix: 155 tables, 317 foreign keys, 657 indexes; Zabbix's server: 173
tables), loaded with no rows: `safehold backup` against `pg_dump -Fc`, and `safehold restore
--create --jobs 2` against `createdb` + `pg_restore -j 2` (each after a CHECKPOINT, taking turns),
the best of five each, side by side, as ratios.

The schemas come from the tools cache that `make test` fills (scripts/deps.sh test installs
pretix and fetches Zabbix's schema; the engine tests keep pretix's migrated schema as SQL): a
schema not there yet is skipped with a line saying so.
"""
import gzip, os, shutil, subprocess, sys, tempfile, json

from run import PG, SAFEHOLD, psql, measure

APPS = os.environ.get("SAFEHOLD_APPS", os.path.join(os.path.expanduser("~"), ".cache", "safehold", "apps"))
SRC, DST = "safehold_bench_app", "safehold_bench_app_dst"
ROUNDS = 5


def schemas(work):
    """(name, path of a plain SQL file) for each application schema in the tools cache."""
    found = []
    pretix = os.path.join(APPS, "pretix", "schema-2026.8.0.sql")
    if os.path.exists(pretix):
        found.append(("pretix 2026.8.0", pretix))
    else:
        print(f"bench: pretix's schema skipped: {pretix} is made by make test's engine tests (run make test once)")
    zabbix = os.path.join(APPS, "zabbix", "schema.sql.gz")
    if os.path.exists(zabbix):
        plain = os.path.join(work, "zabbix.sql")
        with gzip.open(zabbix, "rb") as i, open(plain, "wb") as o:
            shutil.copyfileobj(i, o)
        found.append(("Zabbix server", plain))
    else:
        print(f"bench: Zabbix's schema skipped: {zabbix} is fetched by scripts/deps.sh test")
    return found


def counts(db):
    q = ("SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname = 'public'),"
         " (SELECT count(*) FROM pg_constraint WHERE contype = 'f'),"
         " (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public')")
    out = subprocess.run(["psql", "-X", "-At", "-F", " ", "-d", f"{PG}/{db}", "-c", q], check=True, capture_output=True, text=True).stdout.split()
    return tuple(int(x) for x in out)


def best(name, cmd, before=None, env=None, shell=False):
    runs = []
    for _ in range(ROUNDS):
        if before:
            before()
        runs.append(measure(name, cmd, env=env, shell=shell))
    return min(runs)


def one(name, sql, work, env):
    for db in (SRC, DST):
        psql("postgres", "-c", f"DROP DATABASE IF EXISTS {db}", capture_output=True)
    psql("postgres", "-c", f"CREATE DATABASE {SRC}")
    psql(SRC, "-f", sql, capture_output=True)
    tables, fks, indexes = counts(SRC)
    print(f"== {name}: {tables} tables, {fks} foreign keys, {indexes} indexes, no rows", flush=True)
    dump = os.path.join(work, "dump")
    repo = os.path.join(work, "repo-" + name.split()[0])

    def fresh_dump():
        shutil.rmtree(dump, ignore_errors=True)
        if os.path.exists(dump + ".fc"):
            os.remove(dump + ".fc")

    pg_dump = best("pg_dump -Fc", ["pg_dump", "-Fc", "-f", dump + ".fc", f"{PG}/{SRC}"], before=fresh_dump)
    backup = [SAFEHOLD, "backup", "--source", f"{PG}/{SRC}", "--to", repo, "--type", "full", "--json"]
    # With the repository's password (the first run makes the repository): the password is
    # checked against the repository's master key, a memory-hard derivation (Argon2id, 19 MiB).
    ours = best("safehold backup", backup, env=env)
    # Without it, as scheduled backups into an existing repository run: the archive's key is
    # sealed to the repository's public key, no secret needed.
    sealed = best("safehold backup (sealed)", backup, env={k: v for k, v in env.items() if k != "SAFEHOLD_PASSWORD"})
    newest = json.loads(subprocess.run([SAFEHOLD, "backup", "--source", f"{PG}/{SRC}", "--to", repo, "--type", "full", "--json"], env=env, check=True, capture_output=True, text=True).stdout)["id"]

    def clean():
        psql("postgres", "-c", f"DROP DATABASE IF EXISTS {DST}", capture_output=True)
        psql("postgres", "-c", "CHECKPOINT")

    # Taking turns: each restore after the other's, each after a checkpoint.
    theirs_r, ours_r = [], []
    for _ in range(ROUNDS):
        clean()
        theirs_r.append(measure("pg_restore -j 2", f"createdb -h 127.0.0.1 -U postgres {DST} && pg_restore -j 2 -d {PG}/{DST} {dump}.fc", shell=True))
        clean()
        ours_r.append(measure("safehold restore", [SAFEHOLD, "restore", "--from", repo, "--backup", newest, "--target", f"{PG}/{DST}", "--create", "--jobs", "2", "--json"], env=env))
    theirs_r, ours_r = min(theirs_r), min(ours_r)
    print(f"{'command':<44}{'seconds':>9}{'max RSS MB':>12}")
    for label, (s, m) in [("pg_dump -Fc", pg_dump), ("safehold backup (with the password)", ours), ("safehold backup (sealed, no password)", sealed), ("createdb + pg_restore -j 2", theirs_r), ("safehold restore --create --jobs 2", ours_r)]:
        print(f"{label:<44}{s:>9.2f}{m:>12.0f}")
    print(f"backup / pg_dump -Fc                = {ours[0] / pg_dump[0]:.2f}   (target <= 1.0; with the password's derivation)")
    print(f"backup (sealed) / pg_dump -Fc       = {sealed[0] / pg_dump[0]:.2f}   (target <= 1.0)")
    print(f"restore / pg_restore -j 2           = {ours_r[0] / theirs_r[0]:.2f}   (target <= 1.0)", flush=True)


def main():
    for tool in ["psql", "pg_dump", "pg_restore", "createdb"]:
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing (scripts/deps.sh bench installs it)")
    work = tempfile.mkdtemp(prefix="safehold-bench-apps-")
    env = dict(os.environ, SAFEHOLD_PASSWORD="bench-password")
    try:
        for name, sql in schemas(work):
            one(name, sql, work, env)
    finally:
        if not os.environ.get("BENCH_KEEP"):
            for db in (SRC, DST):
                psql("postgres", "-c", f"DROP DATABASE IF EXISTS {db}", capture_output=True)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
