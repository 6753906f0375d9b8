#!/usr/bin/env python3
"""A/B comparison of two prebuilt `redeploy` binaries under HTTP load.

    python3 bench/ab.py SCENARIO CONNECTIONS ROUNDS BIN_A BIN_B
                        [--duration 5] [--warmup 2] [--idle-wait 120]
                        [--listen-timeout 60] [--keep]

BIN_A and BIN_B are two plain release builds of `redeploy` (e.g.
`cargo build --release -p redeploy-host --bin redeploy` at two commits,
each copied aside). The "before and after" pairs of BENCHMARKS.md, part 5,
are its runs.

SCENARIO is the bench's "decision" (the stack follows `production`, the push
is to `master`: nothing deploys, 200) or "deploy" (the stack follows
`master`: each push is a deploy of /usr/bin/true, 202, or 200 when the
queue cancels it at once as a duplicate of the one pending).

Each round loads A then B (odd rounds), or B then A (even rounds). Each run
starts the binary with `redeploy serve` and the bench's config
(bench/benchlib.py write_redeploy_config: one stack "hello") in a fresh
temporary directory of its own (fresh state directory: fresh journal, and
the component compiled again), posts one check push, waits for the machine
to be idle (bench/serve_vs_webhook.py wait_for_idle_machine), runs wrk with
bench/http.lua for --warmup seconds (discarded), then for --duration
seconds (measured), and stops the server (SIGTERM, SIGKILL after 40 s) and
waits for it. Never builds anything.

Per run: req/s, p50 and p99 (wrk, bench/http.lua's BENCH line); the
server's CPU (utime+stime of /proc/PID/stat, all its threads, dead ones
included) per request over the measured window; voluntary context switches
per request (voluntary_ctxt_switches summed over /proc/PID/task/*/status,
delta over the window, tracked per thread, sampled every 0.5 s so that a
thread ending in the window loses at most its last half second); peak RSS
(VmHWM, reset at the window's start). Any socket error, timeout or status
>= 400 (wrk's "Non-2xx or 3xx responses", which counts status > 399; the
same count bench/serve_vs_webhook.py reports as failed) aborts the run
loudly, keeping its directory and server log.
"""

import argparse
import hashlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

import benchlib  # noqa: E402
import serve_vs_webhook as svw  # noqa: E402
from benchlib import FIXTURE, TOKEN, free_port, post_push, wait_port, write_load_files, write_redeploy_config  # noqa: E402

# The branch each scenario's stack follows (serve_vs_webhook.main); the
# fixture's push is to `master`.
BRANCHES = {"decision": "production", "deploy": "master"}
# The status of the check push on a fresh journal.
CHECK_STATUS = {"decision": {200}, "deploy": {202}}
HTTP_LUA = os.path.join(BENCH, "http.lua")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Redeploy:
    """`redeploy serve` of `binary` with the bench's config
    (serve_vs_webhook.start_redeploy, with the binary as a parameter), in
    `work`. Stopped as serve_vs_webhook.Server.stop does; the process is
    stopped too if it never answers."""

    def __init__(self, binary, work, branch):
        self.port = free_port()
        config = os.path.join(work, f"redeploy-{branch}.toml")
        self.state = os.path.join(work, f"state-{branch}")
        write_redeploy_config(config, self.port, self.state, branch, svw.TRUE)
        self.log_path = os.path.join(work, f"redeploy-{branch}.log")
        self.log = open(self.log_path, "w")
        started = time.time()
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", config], stdout=self.log, stderr=subprocess.STDOUT
        )
        try:
            wait_port(self.port, self.proc, f"redeploy ({binary})")
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.time() - started
        self.url = f"http://127.0.0.1:{self.port}/hooks/{TOKEN}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                print(f"  (pid {self.proc.pid} did not stop in 40 s after SIGTERM: SIGKILL)", flush=True)
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def proc_cpu(pid):
    """(utime+stime, cutime+cstime) of `pid` in seconds: all its threads,
    ended ones included; and its waited-for children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17.
    own = int(fields[11]) + int(fields[12])
    children = int(fields[13]) + int(fields[14])
    return own / CLK_TCK, children / CLK_TCK


def thread_switches(pid):
    """{tid: voluntary_ctxt_switches} over /proc/PID/task/*/status."""
    out = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        out[int(tid)] = int(line.split()[1])
                        break
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread ended while listed
    return out


class SwitchCounter:
    """Voluntary context switches of a process's threads from start() to
    stop(): per thread, its last value seen less its value at start() (0
    for a thread born since, which starts at 0). Sampled every `period` s
    in between, so a thread that ends loses at most its last period."""

    def __init__(self, pid, period=0.5):
        self.pid, self.period = pid, period
        self.first, self.last = {}, {}
        self.stopping = threading.Event()

    def sample(self):
        for tid, n in thread_switches(self.pid).items():
            self.last[tid] = n

    def start(self):
        self.first = thread_switches(self.pid)
        self.last = dict(self.first)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.wait(self.period):
            self.sample()

    def stop(self):
        self.stopping.set()
        self.thread.join()
        now = thread_switches(self.pid)
        self.last.update(now)
        total = sum(n - self.first.get(tid, 0) for tid, n in self.last.items())
        ended = len(set(self.last) - set(now))
        born = len(set(now) - set(self.first))
        return total, ended, born, len(now)


def run_wrk(url, connections, duration, env):
    """serve_vs_webhook.run_wrk, keeping wrk's own output (its "Non-2xx or
    3xx responses" and "Socket errors" lines)."""
    threads = min(connections, 2)
    env = benchlib.wrk_env(env, uuid.uuid4().hex, threads)
    try:
        p = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
             "--timeout", "10s", "-s", HTTP_LUA, url],
            env=env, capture_output=True, text=True,
        )
    finally:
        benchlib.remove_commit_files(env)
    if p.returncode != 0:
        raise RuntimeError(f"wrk exited with {p.returncode}:\n{p.stdout}\n{p.stderr}")
    m = re.search(r"^BENCH (.*)$", p.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk printed no BENCH line:\n{p.stdout}\n{p.stderr}")
    res = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", p.stdout)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", p.stdout)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    res["stdout"] = p.stdout
    return res


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_once(label, binary, scenario, connections, args, env, body, signature):
    branch = BRANCHES[scenario]
    work = tempfile.mkdtemp(prefix=f"redeploy-ab-{label}-")
    server = None
    ok = False
    try:
        server = Redeploy(binary, work, branch)
        pid = server.proc.pid
        status, text, _ = post_push(server.url, body, signature, f"ab-check-{uuid.uuid4().hex}", timeout=10)
        if status not in CHECK_STATUS[scenario]:
            raise RuntimeError(
                f"{label}: the check push answered {status} (expected {sorted(CHECK_STATUS[scenario])}): "
                f"{text.strip()[:300]}"
            )
        check = f"{status} {text.strip()[:100]}"
        waited = svw.wait_for_idle_machine()
        if args.warmup > 0:
            warm = run_wrk(server.url, connections, args.warmup, env)
            bad = warm["errors"] + warm["timeouts"] + warm["status_errors"] + warm["non2xx"] + warm["socket_errors"]
            if bad:
                raise RuntimeError(f"{label}: the warm-up failed {bad} requests:\n{warm['stdout']}")
        svw.reset_peak(pid)
        switches = SwitchCounter(pid)
        cpu0, child0 = proc_cpu(pid)
        switches.start()
        res = run_wrk(server.url, connections, args.duration, env)
        sw, ended, born, nthreads = switches.stop()
        cpu1, child1 = proc_cpu(pid)
        res["peak_kb"] = svw.status_kb(pid, "VmHWM")
        n = max(1, res["requests"])
        res.update(
            label=label,
            cpu_us=(cpu1 - cpu0) * 1e6 / n,
            child_cpu_us=(child1 - child0) * 1e6 / n,
            switches=sw / n,
            threads_ended=ended,
            threads_born=born,
            threads=nthreads,
            waited=waited,
            start_seconds=server.start_seconds,
            check=check,
        )
        # wrk's socket errors are BENCH's errors + timeouts, and its
        # "Non-2xx or 3xx responses" BENCH's status_errors: the same
        # requests, counted once.
        bad = max(res["errors"] + res["timeouts"], res["socket_errors"]) + max(res["status_errors"], res["non2xx"])
        res["bad"] = bad
        ok = bad == 0
        return res, work
    finally:
        if server is not None:
            rc = server.stop()
            if rc not in (0, -signal.SIGTERM):
                print(f"  ({label}: the server exited with {rc}; log: {server.log_path})", flush=True)
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif not ok:
            print(f"  ({label}: run directory kept: {work})", file=sys.stderr, flush=True)


def fmt_range(xs, fmt):
    return f"{fmt.format(min(xs))}-{fmt.format(max(xs))}" if len(xs) > 1 else fmt.format(xs[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", choices=sorted(BRANCHES))
    ap.add_argument("connections", type=int)
    ap.add_argument("rounds", type=int)
    ap.add_argument("bin_a")
    ap.add_argument("bin_b")
    ap.add_argument("--duration", type=int, default=5, help="measured seconds per run (default 5)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds per run, discarded (default 2)")
    ap.add_argument("--idle-wait", type=float, default=svw.IDLE_WAIT_SECONDS,
                    help="longest wait for an idle machine before each run's load, s "
                         f"(default {svw.IDLE_WAIT_SECONDS}, the bench's; 0: do not wait)")
    ap.add_argument("--listen-timeout", type=float, default=60,
                    help="how long a server may take to answer after its start, s (default 60; "
                         "every run compiles the component in its fresh state directory)")
    ap.add_argument("--keep", action="store_true", help="keep each run's directory (config, state, log)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    bins = {"A": os.path.abspath(args.bin_a), "B": os.path.abspath(args.bin_b)}
    for label, b in bins.items():
        if not os.access(b, os.X_OK):
            sys.exit(f"{label}: {b} is not an executable file")
    svw.IDLE_WAIT_SECONDS = args.idle_wait
    benchlib.LISTEN_TIMEOUT_SECONDS = args.listen_timeout

    # The body and signature files bench/http.lua reads (serve_vs_webhook.main).
    shared = tempfile.mkdtemp(prefix="redeploy-ab-")
    body, signature, env = write_load_files(shared)
    if args.scenario == "deploy":
        # A new commit per request (serve_vs_webhook.main).
        env = dict(env, BENCH_FRESH_COMMITS="1")

    for label, b in bins.items():
        print(f"{label}: {b} (sha256 {sha256_file(b)[:16]})")
    print(
        f"scenario {args.scenario} (stack follows {BRANCHES[args.scenario]}, push to master), "
        f"{args.connections} connections, {args.rounds} rounds, warm-up {args.warmup} s, "
        f"measured {args.duration} s; payload {FIXTURE} ({len(body)} bytes); "
        f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}",
        flush=True,
    )
    per = {"A": [], "B": []}
    try:
        for r in range(args.rounds):
            order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
            for label in order:
                res, _ = run_once(label, bins[label], args.scenario, args.connections, args, env, body, signature)
                per[label].append(res)
                waited = f", waited {res['waited']:.1f} s for idle" if res["waited"] >= 1 else ""
                churn = (
                    f", threads {res['threads']} (+{res['threads_born']}/-{res['threads_ended']} in window)"
                    if res["threads_born"] or res["threads_ended"] else f", threads {res['threads']}"
                )
                print(
                    f"round {r + 1} {label}: {res['rps']:.0f} req/s ({res['requests']} in "
                    f"{res['duration_us'] / 1e6:.2f} s) p50 {svw.fmt_ms(res['p50_us'])} "
                    f"p99 {svw.fmt_ms(res['p99_us'])} | CPU {res['cpu_us']:.0f} µs/req "
                    f"(children {res['child_cpu_us']:.0f}) | {res['switches']:.2f} vol. switches/req | "
                    f"peak {res['peak_kb'] / 1024:.1f} MiB | non-2xx {res['non2xx']} "
                    f"socket errors {res['socket_errors']} | start {res['start_seconds']:.1f} s, "
                    f"check {res['check'][:40]!r}{churn}{waited}",
                    flush=True,
                )
                if res["bad"]:
                    sys.exit(
                        f"FAILED: round {r + 1} {label} had {res['bad']} failed requests "
                        f"(non-2xx {res['non2xx']}, socket errors {res['socket_errors']}, "
                        f"BENCH errors={res['errors']} status_errors={res['status_errors']} "
                        f"timeouts={res['timeouts']}):\n{res['stdout']}"
                    )
                time.sleep(1)
    finally:
        shutil.rmtree(shared, ignore_errors=True)

    print()
    print(f"summary: {args.scenario}, {args.connections} connections, {args.rounds} rounds")
    for label in ("A", "B"):
        runs = per[label]
        print(
            f"  {label} req/s: {', '.join('%.0f' % x['rps'] for x in runs)} "
            f"(median {statistics.median(x['rps'] for x in runs):.0f}); "
            f"CPU {fmt_range([x['cpu_us'] for x in runs], '{:.0f}')} µs/req; "
            f"switches {fmt_range([x['switches'] for x in runs], '{:.2f}')} /req; "
            f"p99 {fmt_range([x['p99_us'] / 1000 for x in runs], '{:.2f}')} ms"
        )
    ratios = [b["rps"] / a["rps"] for a, b in zip(per["A"], per["B"])]
    print(
        f"  B/A req/s per pair: {', '.join('%.2f' % x for x in ratios)}; "
        f"median {statistics.median(ratios):.2f}x"
    )
    cpu_ratios = [b["cpu_us"] / a["cpu_us"] for a, b in zip(per["A"], per["B"]) if a["cpu_us"] > 0]
    if cpu_ratios:
        print(f"  B/A CPU per request, median of pairs: {statistics.median(cpu_ratios):.2f}x")


if __name__ == "__main__":
    main()
