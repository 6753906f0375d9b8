"""Writes host/hot-functions.txt: the functions of the `redeploy` binary
that `redeploy serve` runs to start, to answer the common deliveries and
to sit idle, as the linker's symbol ordering file (host/build.rs). The
linker puts them first in .text, together, so the pages a server touches
are few and a server's resident code is small (BENCHMARKS.md, idle
memory). Without the ordering, those 3 MB of functions lay scattered
over the 22 MB of code, and with the 64 KiB window the kernel maps around
every page that faults, 13 MB of it was resident.

The functions are those callgrind (valgrind) sees run, in a binary built
with REDEPLOY_POOLED_INSTANCES=2: the pool of the default 64 slots
reserves more address space than valgrind can map. The build only changes
that constant, so the binary's symbol names are a plain release build's
(`cargo build --release`, `cargo run --release`, `cargo deb`; a test
build unifies dev-dependency features and rehashes the crates above them,
so only about 45% of the names match there: tests/layout.rs).
The traced server starts from the compiled component its binary cached
in an untraced first start, itself under valgrind (whose CPU the cached
code must fit; the compile's child would be valgrind itself,
`/proc/self/exe`, so the first start compiles in its own process),
answers pushes that deploy and pushes to another branch, a ping, a
delivery with a wrong signature, the health and metrics endpoints, idles
and stops on SIGTERM. Not traced, so linked after the list: what only a
first start runs (the child's launch, the cache's write), and what
valgrind's CPU lacks or refuses (SHA instructions; `pidfd_open`, so the
runner's fallback is traced instead).

Run it after a change to the request path or the start, or with a new
Rust toolchain (the names carry hashes of the compiler's version; the
list's header records the `rustc -V` that wrote it, and host/build.rs
leaves a list of another toolchain out), and commit the file. Needs
valgrind (`apt-get install valgrind`). The traced binary is built in a
target directory of its own (`target/hot-functions`: a first run compiles
everything once), so `target/release` keeps the default pool.
"""

import hashlib
import hmac
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter

from benchlib import RELEASE_BUILD, ROOT, SECRET, TOKEN, REPOSITORY, free_port, post_push

OUT = os.path.join(ROOT, "host", "hot-functions.txt")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "github", "goscm-push.json")
# How long a server under valgrind may take to answer its first request.
VALGRIND_START_SECONDS = 300
# How long a traced server idles before it is stopped (its timers run).
IDLE_SECONDS = 5
# Fewer functions than this from a trace means it did not see the server
# (say, the profile names the binary by another path).
MIN_FUNCTIONS = 1000
OTHER_TOKEN = "otherotherotherotherotherother"


def build():
    env = dict(os.environ, REDEPLOY_POOLED_INSTANCES="2")
    target = os.path.join(ROOT, "target", "hot-functions")
    subprocess.run(
        [*RELEASE_BUILD, "--target-dir", target],
        cwd=ROOT, env=env, check=True,
    )
    traced = os.path.join(tempfile.mkdtemp(prefix="hot-"), "redeploy")
    shutil.copy2(os.path.join(target, "release", "redeploy"), traced)
    return traced


def config(path, port, state):
    """Two stacks on the fixture's repository: one follows its branch
    (master: the push deploys), one another branch (the push is
    ignored)."""
    with open(path, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{port}"
state_dir = "{state}"

[[stacks]]
name = "hello"
repository = "{REPOSITORY}"
branch = "master"
secrets = ["{SECRET}"]
hook_token = "{TOKEN}"
command = ["/usr/bin/true"]

[[stacks]]
name = "other"
repository = "{REPOSITORY}"
branch = "production"
secrets = ["{SECRET}"]
hook_token = "{OTHER_TOKEN}"
command = ["/usr/bin/true"]
""")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def deliveries(port):
    """The requests a traced server answers; returns their statuses."""
    body = open(FIXTURE, "rb").read()
    good = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    base = f"http://127.0.0.1:{port}/hooks/"
    statuses = []
    for i in range(3):
        statuses.append(post_push(base + TOKEN, body, good, f"deploy-{i}-{time.time()}", 60)[0])
        statuses.append(post_push(base + OTHER_TOKEN, body, good, f"other-{i}-{time.time()}", 60)[0])
    statuses.append(post_push(base + OTHER_TOKEN, body, "sha256=" + "0" * 64, f"bad-{time.time()}", 60)[0])
    ping = urllib.request.Request(
        base + TOKEN, data=b'{"zen":"Keep it logically awesome.","hook_id":1}', method="POST",
        headers={"Content-Type": "application/json", "X-GitHub-Event": "ping",
                 "X-GitHub-Delivery": f"ping-{time.time()}",
                 "X-Hub-Signature-256": "sha256=" + hmac.new(
                     SECRET.encode(), b'{"zen":"Keep it logically awesome.","hook_id":1}',
                     hashlib.sha256).hexdigest()})
    try:
        with urllib.request.urlopen(ping, timeout=60) as r:
            statuses.append(r.status)
    except urllib.error.HTTPError as e:
        statuses.append(e.code)
    statuses.append(get(f"http://127.0.0.1:{port}/healthz"))
    statuses.append(get(f"http://127.0.0.1:{port}/metrics"))
    return statuses


def trace(binary, cfg, port, out, log):
    """Runs the server of `cfg` (on `port`) under callgrind until it
    answered the deliveries, idled and stopped."""
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}",
         binary, "serve", "--config", cfg],
        stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )
    wait_answer(proc, port, "the traced server", log)
    print("statuses", deliveries(port), flush=True)
    time.sleep(IDLE_SECONDS)
    proc.send_signal(signal.SIGTERM)
    if proc.wait(timeout=VALGRIND_START_SECONDS) != 0:
        sys.exit(f"the traced server exited with {proc.returncode} (see {log})")


def wait_answer(proc, port, what, log):
    """Waits until `proc` (`what`, under valgrind, logging to `log`)
    answers `/healthz` on `port`; exits otherwise."""
    deadline = time.time() + VALGRIND_START_SECONDS
    while get_or_none(f"http://127.0.0.1:{port}/healthz") is None:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            sys.exit(f"{what} did not answer (see {log})")
        time.sleep(0.5)


def get_or_none(url):
    try:
        return get(url)
    except OSError:
        return None


def functions(binary, profile):
    """{mangled name: instructions} of the functions of `binary` that ran,
    read from a callgrind profile (names compressed as `(n) name`, then
    `(n)`; cost lines of a `calls=` line are inclusive and skipped)."""
    cost = Counter()
    names = {"ob": {}, "fn": {}}
    ob = fn = None
    after_calls = False
    for line in open(profile, errors="replace"):
        key, eq, rest = line.rstrip("\n").partition("=")
        if eq and key in ("ob", "cob", "fn", "cfn"):
            table = names[key.lstrip("c")]
            if rest.startswith("("):
                number, _, name = rest[1:].partition(")")
                if name:
                    table[number] = name.strip()
                value = table.get(number)
            else:
                value = rest
            if key == "ob":
                ob = value
            elif key == "fn":
                fn = value
        elif eq and key == "calls":
            after_calls = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            if after_calls:
                after_calls = False
                continue
            parts = line.split()
            if ob == binary and fn and len(parts) >= 2 and parts[1].isdigit():
                cost[fn.split("'")[0]] += int(parts[1])
    return cost


def main():
    binary = build()
    work = tempfile.mkdtemp(prefix="hot-functions-")
    port = free_port()
    cfg = os.path.join(work, "redeploy.toml")
    config(cfg, port, os.path.join(work, "state"))
    # Under valgrind too (untraced): the compiled component is cached for
    # the CPU features wasmtime detects, and valgrind's CPU lacks some a
    # host may have (AVX-512), so a first start on the host itself would
    # cache code the traced start cannot use. The compile runs in the
    # server's own process (valgrind cannot run `/proc/self/exe`).
    first_log = os.path.join(work, "first-start.log")
    first = subprocess.Popen(
        ["valgrind", "--tool=none", binary, "serve", "--config", cfg],
        stdout=open(first_log, "w"), stderr=subprocess.STDOUT,
    )
    wait_answer(first, port, "the untraced first start", first_log)
    first.terminate()
    first.wait()
    profile = os.path.join(work, "server.callgrind")
    log = os.path.join(work, "server.log")
    trace(binary, cfg, port, profile, log)
    if "compil" in open(log).read():
        sys.exit(f"the traced server did not start from the cached component (see {log})")
    cost = functions(binary, profile)
    # Callgrind names code without a symbol by its address.
    ran = [n for n, _ in cost.most_common() if n != "(below main)" and not n.startswith("0x")]
    if len(ran) < MIN_FUNCTIONS:
        sys.exit(f"only {len(ran)} functions of {binary} in {profile}")
    # The compiler cargo builds with, as host/build.rs asks it.
    rustc = subprocess.run([os.environ.get("RUSTC", "rustc"), "-V"], cwd=ROOT,
                           capture_output=True, text=True, check=True)
    with open(OUT, "w") as f:
        f.write("# The functions `redeploy serve` runs to start, answer the common\n")
        f.write("# deliveries and idle, busiest first: the linker's symbol ordering file\n")
        f.write("# (host/build.rs). Written by bench/hot_functions.py; do not edit.\n")
        f.write(f"# {rustc.stdout.strip()}\n")
        for name in ran:
            f.write(name + "\n")
    print(f"{len(ran)} functions written to {OUT}")


if __name__ == "__main__":
    main()
