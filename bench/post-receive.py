#!/usr/bin/env python3
"""Wall time of the post-receive hook per push: warm cache, cold cache, and
a baseline hook that only reads stdin. Medians over N runs, measured side by
side in one run (these machines are noisy).

Run with:  python3 bench/post-receive.py [N]
(it builds the release binary first; REDEPLOY_BIN names another to time).
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

from benchlib import REDEPLOY, build_release_binary

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
build_release_binary()

work = tempfile.mkdtemp(prefix="redeploy-bench-")
config = os.path.join(work, "redeploy.toml")
with open(config, "w") as f:
    f.write('[server]\nstate_dir = "state"\n\n[[stacks]]\nname = "web"\nrepository = "acme/web"\nbranch = "main"\ncommand = ["true"]\n')
# A push to another branch: the pure decision path (no deploy is started).
line = ("1" * 40) + " " + ("2" * 40) + " refs/heads/feature\n"
cache = os.path.join(work, "state", "cache")


def run(cmd, before=None):
    times = []
    for _ in range(N):
        if before:
            before()
        t = time.perf_counter()
        p = subprocess.run(cmd, input=line.encode(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append((time.perf_counter() - t) * 1000)
        if p.returncode != 0:
            sys.exit(p.stderr.decode())
    return statistics.median(times)


hook = [REDEPLOY, "post-receive", "--config", config, "--repository", "acme/web"]
subprocess.run(hook, input=line.encode(), stdout=subprocess.DEVNULL, check=True)  # fill the cache
rows = []
for round_ in range(3):  # interleave, so drift hits every variant alike
    rows.append((
        run(["sh", "-c", "cat > /dev/null"]),
        run(hook),
        run(hook, before=lambda: shutil.rmtree(cache, ignore_errors=True)) if round_ == 0 else None,
    ))
baseline = statistics.median(r[0] for r in rows)
warm = statistics.median(r[1] for r in rows)
cold = rows[0][2]
print(f"runs per variant: {N} (x3 rounds, cold x1)")
print(f"baseline (sh -c 'cat > /dev/null'): {baseline:.2f} ms")
print(f"post-receive, warm cache:          {warm:.2f} ms  (+{warm - baseline:.2f} ms)")
print(f"post-receive, cold cache:          {cold:.2f} ms  (+{cold - baseline:.2f} ms)")
shutil.rmtree(work, ignore_errors=True)
