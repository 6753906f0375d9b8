-- wrk script: POSTs one signed GitHub push, with a fresh X-GitHub-Delivery
-- per request (so redeploy's redelivery deduplication never short-cuts a
-- request) and, with BENCH_COMMITS, a fresh commit too (the deploy path:
-- the same push again deploys nothing). The body and its signature are read from the files named by
-- BENCH_BODY and BENCH_SIGNATURE; bench/serve_vs_webhook.py writes them.
-- Run by bench/serve_vs_webhook.py; by hand:
--   BENCH_BODY=body.json BENCH_SIGNATURE=sig.txt BENCH_RUN=$(date +%s%N) wrk -s bench/http.lua URL

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local body = slurp(os.getenv("BENCH_BODY"))
-- The deploy path (bench/benchlib.py's with_fresh_commits): each request is
-- a new push, `body` with its `after` commit replaced by the next line of
-- this thread's file `<commit> <signature>`; without it, every request
-- sends `body` as it is.
local commits_base = os.getenv("BENCH_COMMITS")
local head, tail, commits
if commits_base then
  local after = assert(os.getenv("BENCH_AFTER"), "BENCH_AFTER is not set")
  local at = assert(string.find(body, after, 1, true), "the body has no BENCH_AFTER")
  head = string.sub(body, 1, at - 1)
  tail = string.sub(body, at + #after)
end
-- Unique to this wrk run (bench/serve_vs_webhook.py's run_wrk sets it):
-- wrk's math.random starts from the same seed in every run, so without it
-- a second run against the same server (the next round, the next
-- connection count, another replica's wrk) would send the same delivery
-- ids again, and measure deduplication instead of deploys.
local run = assert(os.getenv("BENCH_RUN"), "BENCH_RUN is not set")
local signature = slurp(os.getenv("BENCH_SIGNATURE")):gsub("%s+$", "")
local counter = 0
local threads = 0

-- Runs in wrk's main Lua state: thread:set makes `thread_id` a global of
-- the thread's own state, which request() reads. (A local here would be
-- the same 0 in every thread, and two threads would send the same ids.)
function setup(thread)
  thread:set("thread_id", threads)
  threads = threads + 1
end

-- The next `<commit> <signature>` of this thread's file, from its start
-- again once it ends.
local function next_commit()
  if not commits then
    commits = assert(io.open(commits_base .. "." .. tostring(thread_id), "r"))
  end
  local line = commits:read("*l")
  if not line then
    commits:seek("set")
    line = assert(commits:read("*l"), "the commit file is empty")
  end
  return string.match(line, "^(%x+) (%S+)$")
end

function request()
  counter = counter + 1
  local sent, signed = body, signature
  if commits_base then
    local commit
    commit, signed = next_commit()
    sent = head .. commit .. tail
  end
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = string.format("bench-%s-%s-%d", run, tostring(thread_id), counter),
    ["X-Hub-Signature-256"] = signed,
  }
  return wrk.format("POST", nil, headers, sent)
end

function done(summary, latency, requests)
  -- One machine-readable line for bench/serve_vs_webhook.py.
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d status_errors=%d timeouts=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write,
    summary.errors.status, summary.errors.timeout))
end
