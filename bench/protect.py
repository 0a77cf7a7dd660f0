#!/usr/bin/env python3
"""make bench, continuous protection (issue 24): pgbench -c 4 on a private cluster with
wal_level = logical, in alternating rounds without streaming, with PostgreSQL's own
pg_recvlogical (the peer: logical decoding's own cost) and with Safehold's streamer
(`protect run --every 1`), side by side in one run. Prints the recovery point's lag (p50/p99
seconds, sampled from the protection's state), the streamer's and its walsender's CPU shares, the
slowdown of pgbench's TPS, and the replay speed of a restore to a second.

BENCH_PROTECT_SCALE (pgbench -s, default 10), BENCH_PROTECT_SECONDS (each pgbench round, default
20) and BENCH_PROTECT_ROUNDS (default 3) size it; BENCH_PROTECT_FSYNC=1 runs the cluster with
fsync=on."""
import contextlib, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAFEHOLD = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "safehold")
SCALE = os.environ.get("BENCH_PROTECT_SCALE", "10")
SECONDS = int(os.environ.get("BENCH_PROTECT_SECONDS", "20"))
ROUNDS = int(os.environ.get("BENCH_PROTECT_ROUNDS", "3"))
# BENCH_PROTECT_FSYNC=1: the cluster flushes its commits to disk (the private clusters run with
# fsync=off, where a commit costs next to nothing and every per-commit cost of decoding shows).
FSYNC = os.environ.get("BENCH_PROTECT_FSYNC", "") not in ("", "0")
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


@contextlib.contextmanager
def logical_cluster(tools, options=""):
    """A private cluster with wal_level = logical in a temporary folder (removed afterwards
    unless BENCH_KEEP); yields the folder and the server's URL (no database)."""
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing (scripts/deps.sh bench installs it)")
    work = tempfile.mkdtemp(prefix="safehold-bench-protect-")
    os.chmod(work, 0o755)
    cluster = os.path.join(work, "pg")
    os.mkdir(cluster)
    port = free_port()
    run(os.path.join(ROOT, "scripts", "pg-cluster.sh"), "start", cluster, str(port), "trust", "postgres", "-c wal_level=logical -c max_replication_slots=4 " + options)
    try:
        yield work, f"postgres://postgres@127.0.0.1:{port}"
    finally:
        run(os.path.join(ROOT, "scripts", "pg-cluster.sh"), "stop", cluster)
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


def main():
    with logical_cluster(["pgbench", "psql", "pg_recvlogical"], "-c fsync=on" if FSYNC else "") as (work, base):
        measure(work, base)


def measure(work, base):
    url = f"{base}/bench"
    env = dict(os.environ, SAFEHOLD_PASSWORD="bench-password", SAFEHOLD_HOME=os.path.join(work, "home"))
    repo = os.path.join(work, "repo")
    run("psql", "-X", "-q", "-d", f"{base}/postgres", "-c", "CREATE DATABASE bench")
    print(f"== continuous protection: pgbench -i -s {SCALE}, then pgbench -c 4 -j 2 for {SECONDS} s without and with the streamer", flush=True)
    run("pgbench", "-i", "-q", "-s", SCALE, url)
    run("psql", "-X", "-q", "-d", url, "-c", "ALTER TABLE pgbench_history REPLICA IDENTITY FULL", "-c", "VACUUM ANALYZE")
    args = ["--source", url, "--repo", repo, "--name", "bench"]
    run(SAFEHOLD, "protect", "start", *args, "--json", env=env)
    # The peer: PostgreSQL's own streaming client on a slot of its own (same plugin and
    # publication), writing what it receives to /dev/null — the cost of logical decoding
    # itself, with nothing stored.
    run("psql", "-X", "-q", "-d", url, "-c", "SELECT pg_create_logical_replication_slot('peer', 'pgoutput')")

    def active_pid(slot):
        for _ in range(100):
            pid = run("psql", "-X", "-At", "-d", url, "-c", f"SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{slot}'").strip()
            if pid:
                return int(pid)
            time.sleep(0.1)
        return None

    def caught_up(slot):
        # What was written while the slot was not streamed (the other rounds) is decoded
        # before a round is measured, not during it.
        target = run("psql", "-X", "-At", "-d", url, "-c", "SELECT pg_current_wal_flush_lsn()").strip()
        for _ in range(1200):
            done = run("psql", "-X", "-At", "-d", url, "-c", f"SELECT confirmed_flush_lsn >= '{target}' FROM pg_replication_slots WHERE slot_name = '{slot}'").strip()
            if done == "t":
                return
            time.sleep(0.1)
        sys.exit(f"bench: the slot {slot} did not catch up within 120 s")

    tps = {"without": [], "pg_recvlogical": [], "safehold": []}
    lags, cpu, wal_cpu, wall = [], 0.0, 0.0, 0.0
    state = os.path.join(repo, "changes", "bench.json")
    st = {}
    # Rounds alternate (pgbench's TPS drifts by 10 % and more from one run to the next on
    # this machine): without anything streaming, with pg_recvlogical, with Safehold's streamer.
    for _ in range(ROUNDS):
        tps["without"].append(pgbench_tps(url))
        peer = subprocess.Popen(["pg_recvlogical", "-d", url, "-S", "peer", "--start", "-o", "proto_version=1", "-o", "publication_names=bench", "-s", "1", "-F", "1", "-f", "/dev/null"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        active_pid("peer")
        caught_up("peer")
        tps["pg_recvlogical"].append(pgbench_tps(url))
        peer.send_signal(signal.SIGINT)
        peer.wait(timeout=60)

        streamer = subprocess.Popen([SAFEHOLD, "protect", "run", *args, "--every", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        walsender = active_pid("bench")
        caught_up("bench")
        started, cpu0 = time.monotonic(), cpu_seconds(streamer.pid)
        wal0 = cpu_seconds(walsender) if walsender else 0.0
        bench = subprocess.Popen(["pgbench", "-c", "4", "-j", "2", "-T", str(SECONDS), "-n", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The lag sampled from the protection's state (what `protect status` reports while
        # the slot is streamed: now - the end of what is sealed), read here without starting
        # a process every second, whose CPU would be counted against the streamer.
        while bench.poll() is None:
            try:
                with open(state) as f:
                    covered = json.load(f).get("covered_until_us")
                if covered is not None:
                    lags.append(max(0.0, time.time() - (946684800 + covered / 1e6)))
            except (OSError, ValueError):
                pass
            time.sleep(1.0)
        out = bench.stdout.read()
        m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
        tps["safehold"].append(float(m.group(1)) if m else sys.exit(f"bench: no tps: {out}"))
        cpu += cpu_seconds(streamer.pid) - cpu0
        wal_cpu += (cpu_seconds(walsender) - wal0) if walsender else float("nan")
        wall += time.monotonic() - started
        st = json.loads(run(SAFEHOLD, "protect", "status", *args, "--json", env=env))
        streamer.send_signal(signal.SIGINT)
        streamer.wait(timeout=60)
        if streamer.returncode not in (0, -2, 130):
            sys.exit(f"bench: the streamer failed: {streamer.stderr.read().decode()}")
    run("psql", "-X", "-q", "-d", url, "-c", "SELECT pg_drop_replication_slot('peer')")
    without, peer_tps, with_streamer = (statistics.median(tps[k]) for k in ["without", "pg_recvlogical", "safehold"])
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
    print(f"pgbench -c 4 TPS, median of {ROUNDS} rounds of {SECONDS} s each, alternating: {json.dumps(tps)}")
    print(f"pgbench -c 4 TPS without streaming      {without:>10.0f}")
    print(f"pgbench -c 4 TPS with pg_recvlogical    {peer_tps:>10.0f}   (slowdown {100 * (1 - peer_tps / without):.1f} %: logical decoding itself)")
    print(f"pgbench -c 4 TPS with the streamer      {with_streamer:>10.0f}")
    print(f"TPS with / without                      = {with_streamer / without:.3f}   (slowdown {100 * (1 - with_streamer / without):.1f} %, target <= 5 %)")
    print(f"TPS with the streamer / pg_recvlogical  = {with_streamer / peer_tps:.3f}")
    print(f"recovery point lag p50 / p99            = {statistics.median(lags) if lags else float('nan'):.2f} s / {q(0.99):.2f} s   ({len(lags)} samples; target <= 5 s)")
    print(f"  (`protect status` at the end of the last round: lag {st.get('lag_seconds')} s)")
    print(f"streamer CPU share                      = {100 * cpu / wall:.1f} % of one core; the server's decoding for it (its walsender) {100 * wal_cpu / wall:.1f} %")
    print(f"restore to a second: base + {restored['transactions']} transactions ({restored['changes']} changes) in {restore_secs:.1f} s"
          f" = {restored['changes'] / restore_secs:.0f} changes/s (whole restore, base included); balances equal: {same}")
    print(f"(a private cluster with fsync={'on' if FSYNC else 'off'}, on this machine's two cores: pgbench, the server and the streamer share them)")


if __name__ == "__main__":
    main()
