#!/usr/bin/env python3
"""make bench, continuous protection (issue 24): pgbench -c 4 on a private cluster with
wal_level = logical, without and with Safehold's streamer (`protect run --every 1`), side by side
in one run. Prints the recovery point's lag (p50/p99 seconds, sampled with `protect status`), the
streamer's CPU share, the slowdown of pgbench's TPS, and the replay speed of a restore to a second.

BENCH_PROTECT_SCALE (pgbench -s, default 10) and BENCH_PROTECT_SECONDS (each pgbench round,
default 30) size it."""
import json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAFEHOLD = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "safehold")
SCALE = os.environ.get("BENCH_PROTECT_SCALE", "10")
SECONDS = int(os.environ.get("BENCH_PROTECT_SECONDS", "30"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(*cmd, env=None, capture=True):
    p = subprocess.run(cmd, env=env, capture_output=capture, text=True)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:3])} failed: {p.stderr}")
    return p.stdout


def pgbench_tps(url):
    out = run("pgbench", "-c", "4", "-j", "2", "-T", str(SECONDS), "-n", url)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if not m:
        sys.exit(f"bench: no tps in pgbench's output: {out}")
    return float(m.group(1))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main():
    for tool in ["pgbench", "psql"]:
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing (scripts/deps.sh bench installs it)")
    work = tempfile.mkdtemp(prefix="safehold-bench-protect-")
    os.chmod(work, 0o755)
    cluster = os.path.join(work, "pg")
    os.mkdir(cluster)
    port = free_port()
    run(os.path.join(ROOT, "scripts", "pg-cluster.sh"), "start", cluster, str(port), "trust", "postgres", "-c wal_level=logical -c max_replication_slots=4")
    base = f"postgres://postgres@127.0.0.1:{port}"
    url = f"{base}/bench"
    env = dict(os.environ, SAFEHOLD_PASSWORD="bench-password", SAFEHOLD_HOME=os.path.join(work, "home"))
    repo = os.path.join(work, "repo")
    try:
        run("psql", "-X", "-q", "-d", f"{base}/postgres", "-c", "CREATE DATABASE bench")
        print(f"== continuous protection: pgbench -i -s {SCALE}, then pgbench -c 4 -j 2 for {SECONDS} s without and with the streamer", flush=True)
        run("pgbench", "-i", "-q", "-s", SCALE, url)
        run("psql", "-X", "-q", "-d", url, "-c", "ALTER TABLE pgbench_history REPLICA IDENTITY FULL", "-c", "VACUUM ANALYZE")
        without = pgbench_tps(url)

        args = ["--source", url, "--repo", repo, "--name", "bench"]
        run(SAFEHOLD, "protect", "start", *args, "--json", env=env)
        streamer = subprocess.Popen([SAFEHOLD, "protect", "run", *args, "--every", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started, cpu0 = time.monotonic(), cpu_seconds(streamer.pid)
        lags, stop = [], [False]
        bench = subprocess.Popen(["pgbench", "-c", "4", "-j", "2", "-T", str(SECONDS), "-n", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while bench.poll() is None:
            st = json.loads(run(SAFEHOLD, "protect", "status", *args, "--json", env=env))
            if st.get("lag_seconds") is not None:
                lags.append(st["lag_seconds"])
            time.sleep(1.0)
        out = bench.stdout.read()
        m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
        with_streamer = float(m.group(1)) if m else sys.exit(f"bench: no tps: {out}")
        cpu = cpu_seconds(streamer.pid) - cpu0
        wall = time.monotonic() - started
        streamer.send_signal(signal.SIGINT)
        streamer.wait(timeout=60)
        run(SAFEHOLD, "protect", "run", *args, env=env)
        at = run("psql", "-X", "-At", "-d", url, "-c", "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')").strip()
        run(SAFEHOLD, "protect", "run", *args, env=env)
        run("psql", "-X", "-q", "-d", f"{base}/postgres", "-c", "CREATE DATABASE bench_then")
        t0 = time.monotonic()
        restored = json.loads(run(SAFEHOLD, "protect", "restore", "--repo", repo, "--name", "bench", "--at", at, "--to", f"{base}/bench_then", "--json", env=env))
        restore_secs = time.monotonic() - t0
        same = run("psql", "-X", "-At", "-d", url, "-c", "SELECT sum(abalance) FROM pgbench_accounts") == run("psql", "-X", "-At", "-d", f"{base}/bench_then", "-c", "SELECT sum(abalance) FROM pgbench_accounts")
        run(SAFEHOLD, "protect", "stop", *args, env=env)

        lags.sort()
        q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] if lags else float("nan")
        print()
        print(f"pgbench -c 4 TPS without the streamer   {without:>10.0f}")
        print(f"pgbench -c 4 TPS with the streamer      {with_streamer:>10.0f}")
        print(f"TPS with / without                      = {with_streamer / without:.3f}   (slowdown {100 * (1 - with_streamer / without):.1f} %, target <= 5 %)")
        print(f"recovery point lag p50 / p99            = {statistics.median(lags) if lags else float('nan'):.2f} s / {q(0.99):.2f} s   ({len(lags)} samples; target <= 5 s)")
        print(f"streamer CPU share                      = {100 * cpu / wall:.1f} % of one core")
        print(f"restore to a second: base + {restored['transactions']} transactions ({restored['changes']} changes) in {restore_secs:.1f} s"
              f" = {restored['changes'] / restore_secs:.0f} changes/s (whole restore, base included); balances equal: {same}")
        print("(a private cluster with fsync=off, on this machine's two cores: pgbench, the server and the streamer share them)")
    finally:
        run(os.path.join(ROOT, "scripts", "pg-cluster.sh"), "stop", cluster)
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
