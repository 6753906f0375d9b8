-- wrk script: POSTs one signed GitHub push, with a fresh X-GitHub-Delivery
-- per request (so redeploy's redelivery deduplication never short-cuts a
-- request). The body and its signature are read from the files named by
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

function request()
  counter = counter + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = string.format("bench-%s-%s-%d", run, tostring(thread_id), counter),
    ["X-Hub-Signature-256"] = signature,
  }
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  -- One machine-readable line for bench/serve_vs_webhook.py.
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d status_errors=%d timeouts=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write,
    summary.errors.status, summary.errors.timeout))
end
