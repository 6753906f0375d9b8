#!/usr/bin/env python3
"""HTTP throughput, latency and memory of `redeploy serve` against
adnanh/webhook, side by side in one run, and both against the floor: the
most a webhook server reaches on this machine.

Run by bench/run.sh (which installs webhook and wrk and builds the floor
server); by hand, after `cargo build --release --offline --manifest-path
bench/floor/Cargo.toml --target-dir target/floor` (the script builds the
release binary itself: benchlib.build_release_binary):

    python3 bench/serve_vs_webhook.py [--duration 10] [--rounds 3] [--connections 1,16,64]

The three servers listen on loopback and get the same signed GitHub push
(`tests/fixtures/github/goscm-push.json`, a push to `master`, signed with
X-Hub-Signature-256). Each request carries a fresh X-GitHub-Delivery, so
redeploy's redelivery deduplication never short-cuts one. The floor server
(bench/floor) is bare native Rust on redeploy's own HTTP stack (hyper 1 on
tokio): it reads the body, verifies the HMAC in constant time, parses the
push's `ref`, `after` and repository with borrowed serde, decides, and
answers a small JSON; no journal, no sandbox, no deploys. Two scenarios:

- decision: all three follow branch `production`, so the push deploys
  nothing. redeploy verifies the signature, evaluates the push in a fresh
  component instance, journals the delivery and answers 200 with its
  decision; webhook parses the JSON, checks the HMAC and the `ref` match and
  answers 200 "Hook rules were not satisfied."; the floor answers 200
  `"action":"skip"`.
- deploy: all three follow `master`; redeploy and webhook run
  `/usr/bin/true`. Each request is a new push: the fixture with a fresh
  random `after` commit, signed for it (benchlib.with_fresh_commits; the
  same push delivered again is a duplicate redeploy deploys nothing for).
  redeploy journals the deploy durably, answers 202 and runs
  the queued deploys one at a time per stack (a newer deploy supersedes a
  queued one); webhook answers 200 and spawns `true` for every request. For
  the floor this is the same work as a decision: it answers 200
  `"action":"deploy"` and runs nothing.

For each scenario and connection count the three servers are loaded one
after the other for `--rounds` rounds, in one order, then the reverse (so
each pair alternates which goes first). The table shows medians over
rounds, and the median of the per-round throughput ratios: redeploy /
webhook, and each of them as a fraction of the floor (redeploy / floor,
webhook / floor). Peak RSS is VmHWM, reset before each load with
/proc/PID/clear_refs.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from benchlib import (
    FIXTURE,
    REDEPLOY,
    ROOT,
    SECRET,
    TOKEN,
    build_release_binary,
    free_port,
    post_push,
    remove_commit_files,
    wait_port,
    write_load_files,
    write_redeploy_config,
    wrk_env,
)

TRUE = shutil.which("true") or "/usr/bin/true"
# Before each load: the longest wait for the machine to be idle, and the
# busy share under which it is.
IDLE_WAIT_SECONDS = 120
IDLE_BUSY_SHARE = 0.1
# The floor server (bench/floor), built into its own target directory.
FLOOR = os.path.join(ROOT, "target", "floor", "release", "floor")
FLOOR_BUILD = (
    "cargo build --release --offline --manifest-path bench/floor/Cargo.toml --target-dir target/floor"
)


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak(pid):
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def post(url, body, signature, delivery):
    status, text, _ = post_push(url, body, signature, delivery, timeout=10)
    return status, text


class Server:
    def __init__(self, name, argv, port, path, log):
        self.name, self.port, self.path = name, port, path
        self.log = open(log, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(port, self.proc, name)
        self.url = f"http://127.0.0.1:{port}{path}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def start_redeploy(work, branch):
    port = free_port()
    config = os.path.join(work, f"redeploy-{branch}.toml")
    write_redeploy_config(config, port, f"{work}/state-{branch}", branch, TRUE)
    return Server(
        "redeploy",
        [REDEPLOY, "serve", "--config", config],
        port,
        f"/hooks/{TOKEN}",
        os.path.join(work, f"redeploy-{branch}.log"),
    )


def start_webhook(work, branch):
    port = free_port()
    hooks = os.path.join(work, f"hooks-{branch}.json")
    with open(hooks, "w") as f:
        f.write(
            f"""[{{
  "id": "hello",
  "execute-command": "{TRUE}",
  "trigger-rule": {{"and": [
    {{"match": {{"type": "payload-hmac-sha256", "secret": "{SECRET}",
                "parameter": {{"source": "header", "name": "X-Hub-Signature-256"}}}}}},
    {{"match": {{"type": "value", "value": "refs/heads/{branch}",
                "parameter": {{"source": "payload", "name": "ref"}}}}}}
  ]}}
}}]
"""
        )
    return Server(
        "webhook",
        ["webhook", "-hooks", hooks, "-ip", "127.0.0.1", "-port", str(port)],
        port,
        "/hooks/hello",
        os.path.join(work, f"webhook-{branch}.log"),
    )


def start_floor(work, branch):
    port = free_port()
    return Server(
        "floor",
        [FLOOR, "--listen", f"127.0.0.1:{port}", "--secret", SECRET, "--branch", branch],
        port,
        "/hooks/hello",
        os.path.join(work, f"floor-{branch}.log"),
    )


def busy_share(seconds):
    """The share of the machine's CPU time that was busy over `seconds`
    (/proc/stat: every state but idle and iowait)."""

    def read():
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]

    total0, idle0 = read()
    time.sleep(seconds)
    total1, idle1 = read()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle_machine():
    """Waits until the machine is idle (under IDLE_BUSY_SHARE busy over
    half a second), so that every load starts on an idle machine: webhook
    answers before it runs its command, and after its load it goes on
    running the commands it queued, on both cores, for seconds (even once
    stopped), where the next server's load would run. Returns the seconds
    waited (at most IDLE_WAIT_SECONDS)."""
    started = time.time()
    while time.time() - started < IDLE_WAIT_SECONDS:
        if busy_share(0.5) < IDLE_BUSY_SHARE:
            break
    return time.time() - started


def run_wrk(url, connections, duration, env):
    threads = min(connections, 2)
    # Delivery ids (and, on the deploy path, commits) unique to this run
    # (bench/http.lua).
    env = wrk_env(env, uuid.uuid4().hex, threads)
    try:
        out = wrk(url, threads, connections, duration, env)
    finally:
        remove_commit_files(env)
    m = re.search(r"^BENCH (.*)$", out, re.M)
    if not m:
        sys.exit(f"wrk printed no BENCH line:\n{out}")
    fields = dict(kv.split("=") for kv in m.group(1).split())
    fields = {k: int(v) for k, v in fields.items()}
    fields["rps"] = fields["requests"] / (fields["duration_us"] / 1e6)
    return fields


def wrk(url, threads, connections, duration, env):
    """wrk's output for one load with bench/http.lua."""
    return subprocess.run(
        [
            "wrk",
            "-t", str(threads),
            "-c", str(connections),
            "-d", f"{duration}s",
            "--timeout", "10s",
            "-s", os.path.join(ROOT, "bench", "http.lua"),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def fmt_ms(us):
    return f"{us / 1000:.2f} ms"


def median_ratio(per, numerator, denominator):
    """The median over rounds of `numerator`'s req/s over `denominator`'s
    in the same round."""
    return statistics.median(a["rps"] / b["rps"] for a, b in zip(per[numerator], per[denominator]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per load run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", default="1,16,64")
    ap.add_argument("--scenarios", default="decision,deploy")
    args = ap.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    build_release_binary()
    if not os.access(FLOOR, os.X_OK):
        sys.exit(f"no floor server at {FLOOR}; build it with\n    {FLOOR_BUILD}")

    work = tempfile.mkdtemp(prefix="redeploy-http-bench-")
    body, signature, env = write_load_files(work)

    branches = {"decision": "production", "deploy": "master"}
    print(f"payload: {FIXTURE} ({len(body)} bytes), {args.rounds} rounds of {args.duration} s")
    results = []
    for scenario in args.scenarios.split(","):
        branch = branches[scenario]
        # The deploy path: a new commit per request (redeploy deploys each
        # push once).
        load_env = dict(env, BENCH_FRESH_COMMITS="1") if scenario == "deploy" else env
        servers = [start_redeploy(work, branch), start_webhook(work, branch), start_floor(work, branch)]
        try:
            idle = {}
            for s in servers:
                status, text = post(s.url, body, signature, f"check-{s.name}-{scenario}")
                print(f"{scenario}: {s.name} answers {status}: {text.strip()[:160]}")
                time.sleep(0.5)
                idle[s.name] = status_kb(s.proc.pid, "VmRSS")
            for c in connections:
                per = {s.name: [] for s in servers}
                for r in range(args.rounds):
                    order = servers if r % 2 == 0 else list(reversed(servers))
                    for s in order:
                        waited = wait_for_idle_machine()
                        if waited >= 1:
                            print(f"  (waited {waited:.1f} s for the machine to be idle)", flush=True)
                        reset_peak(s.proc.pid)
                        res = run_wrk(s.url, c, args.duration, load_env)
                        res["peak_kb"] = status_kb(s.proc.pid, "VmHWM")
                        per[s.name].append(res)
                        print(
                            f"  {scenario} c={c} round {r + 1} {s.name}: {res['rps']:.0f} req/s "
                            f"p50 {fmt_ms(res['p50_us'])} p99 {fmt_ms(res['p99_us'])} "
                            f"peak {res['peak_kb'] / 1024:.1f} MiB errors {res['errors']} "
                            f"status>399 {res['status_errors']} timeouts {res['timeouts']}",
                            flush=True,
                        )
                        time.sleep(1)
                results.append((scenario, c, per, idle))
        finally:
            for s in servers:
                s.stop()

    print()
    # Each ratio is on its numerator's row.
    ratio_columns = [("redeploy", "webhook"), ("redeploy", "floor"), ("webhook", "floor")]
    print(
        "| scenario | connections | server | req/s | p50 | p99 | peak RSS | idle RSS "
        "| redeploy / webhook req/s | redeploy / floor req/s | webhook / floor req/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for scenario, c, per, idle in results:
        for name in ("redeploy", "webhook", "floor"):
            runs = per[name]
            rps = statistics.median(r["rps"] for r in runs)
            p50 = statistics.median(r["p50_us"] for r in runs)
            p99 = statistics.median(r["p99_us"] for r in runs)
            peak = max(r["peak_kb"] for r in runs) / 1024
            bad = sum(r["errors"] + r["status_errors"] + r["timeouts"] for r in runs)
            ratios = " | ".join(
                f"{median_ratio(per, a, b):.2f}x" if a == name else "" for a, b in ratio_columns
            )
            warn = f" ({bad} failed)" if bad else ""
            print(
                f"| {scenario} | {c} | {name} | {rps:.0f}{warn} | {fmt_ms(p50)} | {fmt_ms(p99)} "
                f"| {peak:.1f} MiB | {idle[name] / 1024:.1f} MiB | {ratios} |"
            )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
