"""What the benchmark scripts share: the vendored GitHub push they send,
finding a free loopback port, waiting for a server to listen, and posting
a signed GitHub push delivery."""

import glob
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# go-scm's GitHub push, vendored with the tests (tests/fixtures/SOURCES.md).
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "github", "goscm-push.json")
# How long a server may take to start listening.
LISTEN_TIMEOUT_SECONDS = 30
# The stack every benchmark server has: it follows a branch of the
# fixture's repository, signed with SECRET, at /hooks/TOKEN.
SECRET = "topsecret"
TOKEN = "benchbenchbenchbenchbenchbench"
REPOSITORY = "Codertocat/Hello-World"
# The binary under test: the release build, or another (an earlier build, to
# compare) named by REDEPLOY_BIN.
REDEPLOY = os.environ.get("REDEPLOY_BIN") or os.path.join(ROOT, "target", "release", "redeploy")
# The build that ships (`cargo build --release`, `cargo run --release`,
# `cargo deb`) and that host/hot-functions.txt is written for.
RELEASE_BUILD = ["cargo", "build", "--release", "-p", "redeploy-host", "--bin", "redeploy"]


def build_release_binary():
    """Makes target/release/redeploy the binary that ships, unless
    REDEPLOY_BIN names another. That path is whichever build of the binary
    cargo made last: `cargo test --release` and `cargo bench` (the plugin
    part of bench/run.sh) leave one with the dev-dependencies' features
    unified in, 1 MB larger and 5-7 MiB more resident when idle
    (BENCHMARKS.md, part 5, seventh pass). When the plain build is
    up to date, cargo only links it back in place (well under a second)."""
    if os.environ.get("REDEPLOY_BIN"):
        return
    subprocess.run(RELEASE_BUILD, cwd=ROOT, check=True)


def write_redeploy_config(path, port, state_dir, branch, command, journal_url=None):
    """Writes a `redeploy serve` config at `path`: one stack, "hello",
    following `branch` of REPOSITORY and running `command` (a path), with
    its journal in the PostgreSQL database `journal_url` if given."""
    journal = f'[journal]\nurl = "{journal_url}"\n\n' if journal_url else ""
    with open(path, "w") as f:
        f.write(
            f"""[server]
listen = "127.0.0.1:{port}"
state_dir = "{state_dir}"

{journal}[[stacks]]
name = "hello"
repository = "{REPOSITORY}"
branch = "{branch}"
secrets = ["{SECRET}"]
hook_token = "{TOKEN}"
command = ["{command}"]
"""
        )


def write_load_files(work):
    """Writes the bench's push (FIXTURE) and its signature into `work`,
    where bench/http.lua reads them; returns the body, its signature
    header's value and the environment for wrk (BENCH_BODY,
    BENCH_SIGNATURE)."""
    with open(FIXTURE, "rb") as f:
        body = f.read()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    body_path = os.path.join(work, "body.json")
    sig_path = os.path.join(work, "signature.txt")
    with open(body_path, "wb") as f:
        f.write(body)
    with open(sig_path, "w") as f:
        f.write(signature)
    return body, signature, dict(os.environ, BENCH_BODY=body_path, BENCH_SIGNATURE=sig_path)


# Requests one wrk thread sends before its commits come round again
# (bench/http.lua starts its file over): more than the deploy path answers
# per thread in one load here (about 6k req/s over two threads, for 10 s).
COMMITS_PER_THREAD = 60000


def with_fresh_commits(env, body, run, threads):
    """For the deploy path: `env` for wrk plus, per wrk thread, a file of
    COMMITS_PER_THREAD lines `<commit> <signature>`, each `body` with its
    `after` commit replaced by a random one, and that body's signature
    (bench/http.lua builds the body). Every request is then a new push:
    redeploy deploys each push once, and the same push under another
    delivery id is a duplicate that deploys nothing. Files are named after
    `run` (wrk's BENCH_RUN), so concurrent loads never share a commit."""
    after = json.loads(body)["after"]
    prefix, suffix = body.split(after.encode(), 1)
    inner = hmac.new(SECRET.encode(), prefix, hashlib.sha256)
    base = os.path.join(os.path.dirname(env["BENCH_BODY"]), f"commits-{run}")
    for thread in range(threads):
        with open(f"{base}.{thread}", "w") as f:
            for _ in range(COMMITS_PER_THREAD):
                commit = os.urandom(20).hex()
                mac = inner.copy()
                mac.update(commit.encode() + suffix)
                f.write(f"{commit} sha256={mac.hexdigest()}\n")
    return dict(env, BENCH_COMMITS=base, BENCH_AFTER=after)


def wrk_env(env, run, threads):
    """The environment of one wrk load of `threads` threads: `env` with
    BENCH_RUN = `run` and, when `env` asks for fresh commits
    (BENCH_FRESH_COMMITS, the deploy path), their files
    ([`with_fresh_commits`]); remove them after with `remove_commit_files`."""
    env = dict(env, BENCH_RUN=run)
    if not env.get("BENCH_FRESH_COMMITS"):
        return env
    with open(env["BENCH_BODY"], "rb") as f:
        body = f.read()
    return with_fresh_commits(env, body, run, threads)


def remove_commit_files(env):
    """Removes the files `with_fresh_commits` wrote for `env`, if any."""
    base = env.get("BENCH_COMMITS")
    if base:
        for path in glob.glob(glob.escape(base) + ".*"):
            os.remove(path)


def free_port():
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    """Waits until `proc` (named `what`) answers HTTP on `port`; exits
    otherwise. An answer, not a connection: `redeploy serve` binds its
    socket before it compiles its component (seconds without a compiled
    cache), and a load started at the first connection would time that."""
    deadline = time.time() + LISTEN_TIMEOUT_SECONDS
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode} before listening")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=max(0.2, deadline - time.time()))
            return
        except urllib.error.HTTPError:
            return  # any status is an answer
        except (OSError, urllib.error.URLError):
            time.sleep(0.05)
    sys.exit(f"{what} did not answer on port {port} within {LISTEN_TIMEOUT_SECONDS} s")


def post_push(url, body, signature, delivery, timeout):
    """POSTs `body` as a GitHub push delivery signed with `signature`;
    returns (status, answer text, seconds taken)."""
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": signature,
        },
    )
    started = time.time()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(), time.time() - started
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), time.time() - started
