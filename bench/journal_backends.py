#!/usr/bin/env python3
"""`redeploy serve` on its two journals, side by side in one run: the
SQLite file (the default) against a PostgreSQL database on the same
machine, with one replica and with three replicas sharing that database.

Run by bench/run.sh (`bash bench/run.sh journal`); by hand, as root or as
a user who may run initdb (the script builds the release binary first:
benchlib.build_release_binary):

    python3 bench/journal_backends.py [--duration 10] [--rounds 3] [--connections 1,16,64]

The PostgreSQL cluster is a throwaway one (initdb + pg_ctl into a temporary
directory, as the `postgres` user when run as root), with PostgreSQL's
defaults for durability: fsync on, synchronous_commit on. Both servers get
the same signed GitHub push with a fresh X-GitHub-Delivery per request
(bench/http.lua), in the two scenarios of bench/serve_vs_webhook.py:
decision (the push deploys nothing: the delivery row is written without
waiting for the disk) and deploy (every accepted deploy is durable before
its 202). The table shows medians over rounds and the median of the
per-round ratio against SQLite (and, for three replicas, against one).

Three replicas run on this one machine, beside the database and the load
generator: they share its cores, so the figure shows what the shared
database and the leases cost, not what three machines would give. The load
is split evenly: one wrk per replica with a third of the connections each,
started together; req/s is their sum and p99 the worst of the three.

`--replica-cpu 0.25` caps every server process (each replica, and the
SQLite server alike) at that fraction of one core, in a cgroup of its own,
once it answers: a stand-in for replicas on machines of their own, each
that size, sharing one database. What the cap cannot model: the database
and wrk still share the machine's cores, and a replica on its own machine
would pay a network round trip per journal call.

`--flush-delay-ms 2` makes every fsync and fdatasync of PostgreSQL and of
each `redeploy serve` wait that long first (bench/slow_flush.c, compiled
with cc and loaded with LD_PRELOAD): a disk slower to flush than this
machine's, where what waits for the disk, and how often, decides the
deploy path.
"""

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

from benchlib import (
    FIXTURE,
    REDEPLOY,
    TOKEN,
    build_release_binary,
    free_port,
    write_load_files,
    write_redeploy_config,
)
from serve_vs_webhook import TRUE, Server, fmt_ms, run_wrk


def as_server_user(argv):
    return ["runuser", "-u", "postgres", "--"] + argv if os.geteuid() == 0 else argv


class Postgres:
    """A throwaway cluster on a free loopback port."""

    def __init__(self, work, prefix=()):
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not versions:
            raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = os.path.dirname(versions[-1])
        self.dir = os.path.join(work, "pg")
        os.makedirs(self.dir)
        if os.geteuid() == 0:
            shutil.chown(work, "postgres")
            shutil.chown(self.dir, "postgres")
        self.port = free_port()
        data = os.path.join(self.dir, "data")
        subprocess.run(
            as_server_user([f"{self.bin}/initdb", "-D", data, "--auth=trust", "-U", "postgres", "--locale=C", "--encoding=UTF8"]),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            as_server_user([
                *prefix,
                f"{self.bin}/pg_ctl", "-D", data, "-l", os.path.join(self.dir, "log"), "-w",
                "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                "start",
            ]),
            check=True,
            capture_output=True,
        )
        self.data = data

    def database(self, name):
        subprocess.run(
            [f"{self.bin}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
            check=True,
        )
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        subprocess.run(
            as_server_user([f"{self.bin}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"]),
            capture_output=True,
        )


class CpuCap:
    """A cgroup of its own that caps what its processes (and their
    children) use at `cores` of CPU: cgroup v2's cpu.max where the cpu
    controller is there, else v1's CFS quota."""

    PERIOD_US = 100000

    def __init__(self, name, cores):
        quota = max(1000, int(cores * self.PERIOD_US))
        v2 = "/sys/fs/cgroup/cgroup.controllers"
        if os.path.exists(v2) and "cpu" in open(v2).read().split():
            with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as f:
                f.write("+cpu")
            self.dir = f"/sys/fs/cgroup/redeploy-bench-{name}"
            os.makedirs(self.dir, exist_ok=True)
            with open(os.path.join(self.dir, "cpu.max"), "w") as f:
                f.write(f"{quota} {self.PERIOD_US}")
        else:
            self.dir = f"/sys/fs/cgroup/cpu/redeploy-bench-{name}"
            os.makedirs(self.dir, exist_ok=True)
            with open(os.path.join(self.dir, "cpu.cfs_period_us"), "w") as f:
                f.write(str(self.PERIOD_US))
            with open(os.path.join(self.dir, "cpu.cfs_quota_us"), "w") as f:
                f.write(str(quota))

    def add(self, pid):
        with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def remove(self):
        try:
            os.rmdir(self.dir)
        except OSError as e:
            print(f"cannot remove cgroup {self.dir}: {e}")


def start(work, name, branch, journal_url, cpu=None, prefix=()):
    """A `serve` on `journal_url` (SQLite when None), capped at `cpu` of a
    core once it answers when `cpu` is set, run through `prefix` (an `env`
    that sets its environment)."""
    port = free_port()
    config = os.path.join(work, f"{name}-{branch}.toml")
    write_redeploy_config(config, port, f"{work}/state-{name}-{branch}", branch, TRUE, journal_url)
    server = Server(
        name,
        [*prefix, REDEPLOY, "serve", "--config", config],
        port,
        f"/hooks/{TOKEN}",
        os.path.join(work, f"{name}-{branch}.log"),
    )
    server.cap = None
    if cpu:
        server.cap = CpuCap(f"{name}-{branch}", cpu)
        server.cap.add(server.proc.pid)
    return server


class Group:
    """One server, or several replicas on one journal, loaded together."""

    def __init__(self, name, servers):
        self.name = name
        self.servers = servers

    def load(self, connections, duration, env):
        if len(self.servers) == 1:
            return run_wrk(self.servers[0].url, connections, duration, env)
        share = max(1, connections // len(self.servers))
        results = [None] * len(self.servers)

        def one(i, server):
            results[i] = run_wrk(server.url, share, duration, env)

        threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(self.servers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = {k: sum(r[k] for r in results) for k in ("requests", "errors", "status_errors", "timeouts")}
        total["rps"] = sum(r["rps"] for r in results)
        total["p50_us"] = statistics.median(r["p50_us"] for r in results)
        total["p99_us"] = max(r["p99_us"] for r in results)
        return total

    def stop(self):
        for s in self.servers:
            s.stop()
            if s.cap:
                s.cap.remove()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per load run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", default="1,16,64")
    ap.add_argument("--scenarios", default="decision,deploy")
    ap.add_argument(
        "--replica-cpu",
        type=float,
        help="cap each server at this fraction of a core (a machine of its own)",
    )
    ap.add_argument(
        "--flush-delay-ms",
        type=float,
        help="make every fsync of the database and the servers wait this long (a slower disk)",
    )
    args = ap.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    build_release_binary()

    work = tempfile.mkdtemp(prefix="redeploy-journal-bench-")
    os.chmod(work, 0o755)
    body, signature, env = write_load_files(work)

    prefix = ()
    if args.flush_delay_ms:
        shim = os.path.join(work, "slow_flush.so")
        source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slow_flush.c")
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", shim, source, "-ldl"], check=True)
        os.chmod(shim, 0o755)
        delay_us = int(args.flush_delay_ms * 1000)
        prefix = ("env", f"LD_PRELOAD={shim}", f"REDEPLOY_BENCH_FLUSH_DELAY_US={delay_us}")
        print(f"every fsync and fdatasync waits {args.flush_delay_ms} ms first")
    pg = Postgres(work, prefix)
    print(f"payload: {FIXTURE} ({len(body)} bytes), {args.rounds} rounds of {args.duration} s")
    cpu = args.replica_cpu
    if cpu:
        print(f"each server capped at {cpu} of a core")
    results = []
    try:
        branches = {"decision": "production", "deploy": "master"}
        for scenario in args.scenarios.split(","):
            branch = branches[scenario]
            # The deploy path: a new commit per request
            # (serve_vs_webhook.main).
            load_env = dict(env, BENCH_FRESH_COMMITS="1") if scenario == "deploy" else env
            one = pg.database(f"bench_{scenario}")
            three = pg.database(f"bench_{scenario}_3")
            servers = [
                Group("sqlite", [start(work, "sqlite", branch, None, cpu, prefix)]),
                Group("postgres", [start(work, "postgres", branch, one, cpu, prefix)]),
                Group(
                    "postgres-3",
                    [start(work, f"postgres-3-{i}", branch, three, cpu, prefix) for i in range(3)],
                ),
            ]
            try:
                for c in connections:
                    per = {s.name: [] for s in servers}
                    for r in range(args.rounds):
                        order = servers if r % 2 == 0 else list(reversed(servers))
                        for s in order:
                            res = s.load(c, args.duration, load_env)
                            per[s.name].append(res)
                            print(
                                f"  {scenario} c={c} round {r + 1} {s.name}: {res['rps']:.0f} req/s "
                                f"p50 {fmt_ms(res['p50_us'])} p99 {fmt_ms(res['p99_us'])} "
                                f"errors {res['errors']} status>399 {res['status_errors']} "
                                f"timeouts {res['timeouts']}",
                                flush=True,
                            )
                            time.sleep(1)
                    results.append((scenario, c, per))
            finally:
                for s in servers:
                    s.stop()
    finally:
        pg.stop()

    print()
    print("| scenario | connections | journal | req/s | p50 | p99 | / sqlite req/s | / one replica req/s |")
    print("|---|---|---|---|---|---|---|---|")

    def ratio(per, name, base):
        return f"{statistics.median(a['rps'] / b['rps'] for a, b in zip(per[name], per[base])):.2f}x"

    for scenario, c, per in results:
        for name in ("sqlite", "postgres", "postgres-3"):
            runs = per[name]
            rps = statistics.median(r["rps"] for r in runs)
            p50 = statistics.median(r["p50_us"] for r in runs)
            p99 = statistics.median(r["p99_us"] for r in runs)
            bad = sum(r["errors"] + r["status_errors"] + r["timeouts"] for r in runs)
            vs_sqlite = ratio(per, name, "sqlite") if name != "sqlite" else ""
            vs_one = ratio(per, name, "postgres") if name == "postgres-3" else ""
            warn = f" ({bad} failed)" if bad else ""
            print(
                f"| {scenario} | {c} | {name} | {rps:.0f}{warn} | {fmt_ms(p50)} | {fmt_ms(p99)} | {vs_sqlite} | {vs_one} |"
            )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
