#!/usr/bin/env python3
"""make bench, part three: a chain of incrementals against a full of the same data (issue 26).

On `pgbench -i -s $BENCH_CHAIN_SCALE` (10 unless set: one big table, pgbench_history without a
key): a full backup, then five rounds of pgbench transactions each followed by an incremental;
then a full backup of the final state. First, the backup of that one big table against COPY on one connection. Printed side by side: restoring the newest incremental
(the full and its five links) against restoring that full, both `--jobs 2` into a new database,
and each incremental's size against the full's.
"""
import os, subprocess, sys, tempfile, shutil, json

from run import PG, SAFEHOLD, psql, measure

SRC, DST = "safehold_bench_chain", "safehold_bench_chain_dst"
SCALE = os.environ.get("BENCH_CHAIN_SCALE", "10")
ROUNDS = 5


def backup(repo, kind, env):
    out = subprocess.run([SAFEHOLD, "backup", "--source", f"{PG}/{SRC}", "--to", repo, "--type", kind, "--json"], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def restore(repo, backup_id, env):
    """The better of two restores of `backup_id` into a new database, each after a CHECKPOINT."""
    best = None
    for _ in range(2):
        psql("postgres", "-c", f"DROP DATABASE IF EXISTS {DST}")
        psql("postgres", "-c", "CHECKPOINT")
        r = measure("safehold restore", [SAFEHOLD, "restore", "--from", repo, "--backup", backup_id, "--target", f"{PG}/{DST}", "--create", "--jobs", "2", "--json"], env=env)
        best = r if best is None else min(best, r)
    return best


def one_table_backup(work, env):
    """A backup of pgbench's data, nearly all one table (pgbench_accounts), against reading every
    table with COPY on one connection: the backup reads that table in page ranges with both
    workers (issue 26, item 1). The better of two runs each."""
    copy = min(measure("COPY read", f"psql -X -q -d {PG}/{SRC} -c 'COPY pgbench_accounts TO STDOUT' -c 'COPY pgbench_branches TO STDOUT' -c 'COPY pgbench_tellers TO STDOUT' -c 'COPY pgbench_history TO STDOUT' > /dev/null", shell=True) for _ in range(2))
    ours = min(measure("safehold backup", [SAFEHOLD, "backup", "--source", f"{PG}/{SRC}", "--to", os.path.join(work, f"one-table-{i}"), "--type", "full", "--json"], env=env) for i in range(2))
    print(f"{'COPY every table, one connection (read limit)':<52}{copy[0]:>9.2f}{copy[1]:>12.0f}")
    print(f"{'safehold backup (one big table, page ranges)':<52}{ours[0]:>9.2f}{ours[1]:>12.0f}")
    print(f"safehold backup / COPY read, one connection    = {ours[0] / copy[0]:.2f}   (target <= 0.6 on 2 cores)", flush=True)


def main():
    if not shutil.which("pgbench"):
        sys.exit("bench: pgbench is missing (scripts/deps.sh bench installs it)")
    work = tempfile.mkdtemp(prefix="safehold-bench-chain-")
    env = dict(os.environ, SAFEHOLD_PASSWORD="bench-password")
    for db in (SRC, DST):
        psql("postgres", "-c", f"DROP DATABASE IF EXISTS {db}")
    psql("postgres", "-c", f"CREATE DATABASE {SRC}")
    print(f"== a chain of {ROUNDS} incrementals on pgbench -i -s {SCALE}", flush=True)
    subprocess.run(["pgbench", "-q", "-i", "-s", SCALE, f"{PG}/{SRC}"], check=True, capture_output=True)
    chain_repo, full_repo = os.path.join(work, "chain"), os.path.join(work, "full")
    one_table_backup(work, env)
    full = backup(chain_repo, "full", env)
    sizes = []
    last = full
    # About 0.5 % of pgbench_accounts' rows changed per round.
    transactions = str(max(100, int(float(SCALE) * 100_000 * 0.005 // 2)))
    for _ in range(ROUNDS):
        subprocess.run(["pgbench", "-n", "-c", "2", "-t", transactions, f"{PG}/{SRC}"], check=True, capture_output=True)
        last = backup(chain_repo, "incremental", env)
        sizes.append(last["bytes"])
    whole = backup(full_repo, "full", env)
    chain_s, chain_rss = restore(chain_repo, last["id"], env)
    full_s, full_rss = restore(full_repo, whole["id"], env)
    print(f"{'command':<52}{'seconds':>9}{'max RSS MB':>12}")
    print(f"{'safehold restore, a full + ' + str(ROUNDS) + ' incrementals':<52}{chain_s:>9.2f}{chain_rss:>12.0f}")
    print(f"{'safehold restore, a full of the same data':<52}{full_s:>9.2f}{full_rss:>12.0f}")
    print()
    print(f"restore of full + {ROUNDS} incrementals / restore of a full = {chain_s / full_s:.2f}   (target <= 1.2)")
    ratios = ", ".join(f"{s / full['bytes']:.2f}" for s in sizes)
    print(f"incremental size / full size (each round)      = {ratios}   (target <= 0.05)")
    if not os.environ.get("BENCH_KEEP"):
        for db in (SRC, DST):
            psql("postgres", "-c", f"DROP DATABASE IF EXISTS {db}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
