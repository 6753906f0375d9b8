#!/usr/bin/env python3
"""Four concurrent 25 MiB GitHub pushes against `redeploy serve`, with small
deliveries sent meanwhile: checks that a maximal delivery neither crashes nor
holds the server, and reports its latencies and peak RSS.

Run with `python3 bench/big_delivery.py` (it builds the release binary
first: benchlib.build_release_binary).
"""

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

from benchlib import (
    FIXTURE,
    REDEPLOY,
    SECRET,
    TOKEN,
    build_release_binary,
    free_port,
    post_push,
    wait_port,
    write_redeploy_config,
)

MAX_BODY = 25 * 1024 * 1024


def sign(body):
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def main():
    build_release_binary()
    payload = json.load(open(FIXTURE))
    commit = payload["commits"][0]
    one = len(json.dumps(commit)) + 40
    commits = []
    for i in range(MAX_BODY // one):
        c = dict(commit, id="%040x" % (i + 1), modified=["src/file%d.rs" % i])
        commits.append(c)
    payload["commits"] = commits
    big = json.dumps(payload).encode()
    while len(big) > MAX_BODY:
        del commits[-200:]
        big = json.dumps(payload).encode()
    small = open(FIXTURE, "rb").read()

    work = tempfile.mkdtemp(prefix="redeploy-big-")
    port = free_port()
    config = os.path.join(work, "redeploy.toml")
    write_redeploy_config(config, port, f"{work}/state", "production", shutil.which("true"))
    log = open(os.path.join(work, "serve.log"), "w")
    server = subprocess.Popen(
        [REDEPLOY, "serve", "--config", config],
        stderr=log,
    )
    try:
        wait_port(port, server, "redeploy serve")
        url = f"http://127.0.0.1:{port}/hooks/{TOKEN}"

        def post(body, delivery):
            status, _, seconds = post_push(url, body, sign(body), delivery, timeout=60)
            return status, seconds

        big_results = {}
        threads = [
            threading.Thread(target=lambda i=i: big_results.__setitem__(i, post(big, f"big-{i}")))
            for i in range(4)
        ]
        for t in threads:
            t.start()
        time.sleep(0.3)
        smalls = [post(small, f"small-{i}") for i in range(20)]
        for t in threads:
            t.join()
        times = sorted(t for _, t in smalls)
        print(f"body: {len(big)} bytes, {len(commits)} commits")
        print(
            "4 concurrent 25 MiB deliveries: "
            + ", ".join(f"{s} in {t:.2f} s" for s, t in big_results.values())
        )
        print(
            f"20 small deliveries meanwhile: statuses {sorted(set(s for s, _ in smalls))}, "
            f"median {times[10] * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms"
        )
        print(f"a small delivery afterwards: {post(small, 'after')[0]}")
        with open(f"/proc/{server.pid}/status") as f:
            peak = [line.split()[1] for line in f if line.startswith("VmHWM")][0]
        print(f"server peak RSS: {int(peak) / 1024:.0f} MiB")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
