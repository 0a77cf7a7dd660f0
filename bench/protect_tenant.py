#!/usr/bin/env python3
"""make bench, continuous protection (issue 24): one tenant put back to a second, in place, from
the benchmark dataset (gen.sql: 200 tenants; scale 1 ≈ 1 GB) after minutes of `pgbench -c 4`
writes streamed by `protect run --every 1` — the issue's target is 10 s.

The workload (a pgbench script, each transaction: an event of a random tenant updated, one
inserted, one deleted) runs BENCH_PROTECT_TENANT_MINUTES (default 10, the issue's) on a private
cluster with wal_level = logical; then one tenant is put back to the second after the last write
(`protect restore --at … --tenant … --to` the database itself) and timed, with the plan it prints
(base, segments, transactions). The tenant's rows before and after must be equal (the second is
after the last write: nothing may change). BENCH_PROTECT_TENANT_SCALE (default 1) sizes the data."""
import json, os, signal, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from protect import SAFEHOLD, ROOT, logical_cluster, run  # noqa: E402

SCALE = os.environ.get("BENCH_PROTECT_TENANT_SCALE", "1")
MINUTES = float(os.environ.get("BENCH_PROTECT_TENANT_MINUTES", "10"))

WORKLOAD = """\\set e random(1, :maxid)
\\set d random(1, :maxid)
\\set t random(0, 199)
BEGIN;
UPDATE events SET payload = jsonb_set(payload, '{bench}', to_jsonb(:e)) WHERE id = :e;
INSERT INTO events (tenant_id, kind, payload, created_at) SELECT id, 'bench', '{"n": 1}', now() FROM tenants ORDER BY id OFFSET :t LIMIT 1;
DELETE FROM events WHERE id = :d;
END;
"""

TABLES = ["users", "projects", "documents", "events", "attachments"]


def tenant_state(url, tenant):
    q = " UNION ALL ".join(f"SELECT '{t}', count(*), md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {t} x WHERE tenant_id = '{tenant}'" for t in TABLES)
    return run("psql", "-X", "-At", "-d", url, "-c", q)


def main():
    with logical_cluster(["pgbench", "psql"], "-c max_wal_size=4GB") as (work, base):
        measure(work, base)


def measure(work, base):
    url = f"{base}/bench"
    env = dict(os.environ, SAFEHOLD_PASSWORD="bench-password", SAFEHOLD_HOME=os.path.join(work, "home"))
    repo = os.path.join(work, "repo")
    script = os.path.join(work, "workload.sql")
    with open(script, "w") as f:
        f.write(WORKLOAD)
    run("psql", "-X", "-q", "-d", f"{base}/postgres", "-c", "CREATE DATABASE bench")
    print(f"== one tenant to a second: gen.sql at scale {SCALE}, then pgbench -c 4 for {MINUTES:g} min streamed", flush=True)
    run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"scale={SCALE}", "-d", url, "-f", os.path.join(ROOT, "bench", "gen.sql"))
    run("psql", "-X", "-q", "-d", url, "-c", "VACUUM ANALYZE")
    size = run("psql", "-X", "-At", "-d", url, "-c", "SELECT pg_size_pretty(pg_database_size(current_database()))").strip()
    maxid = run("psql", "-X", "-At", "-d", url, "-c", "SELECT max(id) FROM events").strip()
    tenant = run("psql", "-X", "-At", "-d", url, "-c", "SELECT id FROM tenants ORDER BY id LIMIT 1").strip()
    args = ["--source", url, "--repo", repo, "--name", "bench"]
    t0 = time.monotonic()
    run(SAFEHOLD, "protect", "start", *args, "--json", env=env)
    print(f"database {size}; protection started (slot and base backup) in {time.monotonic() - t0:.1f} s", flush=True)
    streamer = subprocess.Popen([SAFEHOLD, "protect", "run", *args, "--every", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = run("pgbench", "-c", "4", "-j", "2", "-T", str(int(MINUTES * 60)), "-n", "-D", f"maxid={maxid}", "-f", script, url)
    tps = next((l for l in out.splitlines() if l.startswith("tps")), "?")
    streamer.send_signal(signal.SIGINT)
    streamer.wait(timeout=120)
    at = run("psql", "-X", "-At", "-d", url, "-c", "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')").strip()
    run(SAFEHOLD, "protect", "run", *args, env=env)
    before = tenant_state(url, tenant)
    t0 = time.monotonic()
    done = json.loads(run(SAFEHOLD, "protect", "restore", "--repo", repo, "--name", "bench", "--at", at, "--to", url, "--tenant", tenant, "--json", env=env))
    secs = time.monotonic() - t0
    after = tenant_state(url, tenant)
    plan = done.get("plan", {})
    print()
    print(f"pgbench: {tps}")
    print(f"one tenant (of 200) put back in place to {at}: {secs:.1f} s (target <= 10 s)"
          f"  — base + {plan.get('segments')} segments, {plan.get('transactions')} transactions ({plan.get('changes')} changes) replayed; tenant's rows unchanged: {before == after}")
    if before != after:
        sys.exit(f"bench: the tenant's rows changed:\n{before}\n---\n{after}")


if __name__ == "__main__":
    main()
