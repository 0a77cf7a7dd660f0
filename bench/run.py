#!/usr/bin/env python3
"""make bench: safehold against pg_dump/pg_restore and the COPY read limit, side by side in one run."""
import os, platform, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Scale 1 is ≈1 GB; memory is also measured at 0.25 to show it does not grow with the data.
SCALES = (os.environ.get("BENCH_SCALE") or os.environ.get("BENCH_SCALES") or "0.25 1").split()
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
SAFEHOLD = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "safehold")
SRC, DST1, DST2 = "safehold_bench", "safehold_bench_pgrestore", "safehold_bench_restore"

def psql(db, *args, **kw):
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", f"{PG}/{db}", *args], check=True, **kw)

def measure(name, cmd, shell=False, env=None):
    """Runs cmd, returns (seconds, max RSS in MB of the process tree's largest process)."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, shell=shell, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    secs = time.monotonic() - start
    err = p.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: {name} failed: {err}")
    return secs, ru.ru_maxrss / 1024

def main():
    for tool in ["psql", "pg_dump", "pg_restore", "zstd", "openssl"]:
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing (scripts/deps.sh bench installs it)")
    memory = {}
    for scale in SCALES:
        memory[scale] = run_scale(scale)
    if len(memory) > 1:
        print()
        low, high = SCALES[0], SCALES[-1]
        print(f"safehold backup peak memory by scale: " + ", ".join(f"{m:.0f} MB at {s}" for s, (m, _) in memory.items()))
        print(f"safehold restore peak memory by scale: " + ", ".join(f"{r:.0f} MB at {s}" for s, (_, r) in memory.items()))
        print(f"backup peak memory at {high} / at {low}  = {memory[high][0] / memory[low][0]:.2f}   (flat: target <= 1.2)")

def run_scale(scale):
    """One run at one scale; returns safehold's peak memory (backup, restore) in MB."""
    print(f"== scale {scale}", flush=True)
    work = tempfile.mkdtemp(prefix="safehold-bench-")
    for db in (SRC, DST1, DST2):
        psql("postgres", "-c", f"DROP DATABASE IF EXISTS {db}")
    psql("postgres", "-c", f"CREATE DATABASE {SRC}")
    print(f"generating the dataset at scale {scale}…", flush=True)
    psql(SRC, "-v", f"scale={scale}", "-f", os.path.join(ROOT, "bench", "gen.sql"), stdout=subprocess.DEVNULL)
    psql(SRC, "-c", "VACUUM ANALYZE")
    tables = subprocess.run(["psql", "-X", "-At", "-d", f"{PG}/{SRC}", "-c",
        "SELECT quote_ident(schemaname) || '.' || quote_ident(relname) FROM pg_stat_user_tables ORDER BY 1"],
        check=True, capture_output=True, text=True).stdout.split()
    copy_sql = os.path.join(work, "copy.sql")
    with open(copy_sql, "w") as f:
        f.writelines(f"COPY {t} TO STDOUT;\n" for t in tables)
    env = dict(os.environ, SAFEHOLD_PASSWORD="bench-password", PGPASSWORD=os.environ.get("PGPASSWORD", ""))
    repo = os.path.join(work, "repo")
    results = {}
    results["copy"] = measure("COPY read", f"psql -X -q -d {PG}/{SRC} -f {copy_sql} > /dev/null", shell=True)
    results["pg_dump_fc"] = measure("pg_dump -Fc", ["pg_dump", "-Fc", "-f", os.path.join(work, "dump.fc"), f"{PG}/{SRC}"])
    results["pipeline"] = measure("pipeline",
        f"pg_dump -Fp {PG}/{SRC} | zstd -3 -T2 -q | openssl enc -aes-256-ctr -pbkdf2 -pass pass:x | tee {work}/dump.zst.enc | sha256sum > /dev/null",
        shell=True)
    results["safehold_backup"] = measure("safehold backup", [SAFEHOLD, "backup", "--source", f"{PG}/{SRC}", "--to", repo, "--json"], env=env)
    # Restores write a lot: whichever runs second would pay for the checkpoints of the first's WAL.
    # So each starts after a CHECKPOINT, they alternate, and the better of two rounds counts. Both
    # create their database within the time measured (`safehold restore --create` does).
    for _ in range(2):
        for db in (DST1, DST2):
            psql("postgres", "-c", f"DROP DATABASE IF EXISTS {db}")
        psql("postgres", "-c", "CHECKPOINT")
        r = measure("pg_restore -j 2",
            f"psql -X -q -d {PG}/postgres -c 'CREATE DATABASE {DST1}' && pg_restore -j 2 -d {PG}/{DST1} {os.path.join(work, 'dump.fc')}", shell=True)
        results["pg_restore"] = min(results.get("pg_restore", r), r)
        psql("postgres", "-c", "CHECKPOINT")
        r = measure("safehold restore", [SAFEHOLD, "restore", "--from", repo, "--target", f"{PG}/{DST2}", "--create", "--jobs", "2", "--json"], env=env)
        results["safehold_restore"] = min(results.get("safehold_restore", r), r)
    # One tenant of the 200 (about 0.5 % of the rows) put back in place, into the database the
    # last restore made (the plan confirmed with --yes; its safety backup is part of the time).
    tenant = subprocess.run(["psql", "-X", "-At", "-d", f"{PG}/{DST2}", "-c", "SELECT id FROM tenants ORDER BY id LIMIT 1"], check=True, capture_output=True, text=True).stdout.strip()
    results["safehold_tenant"] = measure("safehold restore --type tenant_only", [SAFEHOLD, "restore", "--from", repo, "--target", f"{PG}/{DST2}", "--type", "tenant_only", "--tenant", tenant, "--yes", "--json"], env=env)
    archive = [os.path.join(repo, "archives", f) for f in sorted(os.listdir(os.path.join(repo, "archives")))][0]
    sizes = {"pg_dump -Fc": os.path.getsize(os.path.join(work, "dump.fc")), "pipeline": os.path.getsize(os.path.join(work, "dump.zst.enc")), "safehold": os.path.getsize(archive)}
    raw = int(subprocess.run(["psql", "-X", "-At", "-d", f"{PG}/{SRC}", "-c", "SELECT pg_database_size(current_database())"], capture_output=True, text=True).stdout)

    s = lambda k: results[k][0]
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; PostgreSQL {subprocess.run(['psql','-X','-At','-d',f'{PG}/{SRC}','-c','SHOW server_version'],capture_output=True,text=True).stdout.strip()}; scale {scale} ({raw/1e6:.0f} MB on disk)")
    print(f"{'command':<44}{'seconds':>9}{'max RSS MB':>12}")
    names = {"copy": "COPY every table to /dev/null (read limit)", "pg_dump_fc": "pg_dump -Fc", "pipeline": "pg_dump -Fp | zstd -3 -T2 | openssl | sha256sum",
             "safehold_backup": "safehold backup (zstd+AES-GCM+SHA-256)", "pg_restore": "pg_restore -j 2", "safehold_restore": "safehold restore",
             "safehold_tenant": "safehold restore, one tenant in place"}
    for k, (secs, rss) in results.items():
        print(f"{names[k]:<44}{secs:>9.2f}{rss:>12.0f}")
    print()
    print(f"safehold backup / pg_dump -Fc      = {s('safehold_backup') / s('pg_dump_fc'):.2f}   (target <= 0.33)")
    print(f"safehold backup / pipeline         = {s('safehold_backup') / s('pipeline'):.2f}")
    print(f"safehold backup / COPY read        = {s('safehold_backup') / s('copy'):.2f}   (target <= 1.5)")
    print(f"safehold archive / pg_dump -Fc size = {sizes['safehold'] / sizes['pg_dump -Fc']:.2f}   (target <= 1.0; {sizes['safehold']/1e6:.0f} MB vs {sizes['pg_dump -Fc']/1e6:.0f} MB)")
    print(f"safehold restore / pg_restore -j 2 = {s('safehold_restore') / s('pg_restore'):.2f}   (target <= 0.8)")
    print(f"one tenant in place / full restore = {s('safehold_tenant') / s('safehold_restore'):.2f}   (target <= 0.1)")
    print(f"safehold backup peak memory        = {results['safehold_backup'][1]:.0f} MB   (target <= 150)")
    if not os.environ.get("BENCH_KEEP"):
        for db in (SRC, DST1, DST2):
            psql("postgres", "-c", f"DROP DATABASE IF EXISTS {db}")
        shutil.rmtree(work, ignore_errors=True)
    return results["safehold_backup"][1], results["safehold_restore"][1]

if __name__ == "__main__":
    main()
