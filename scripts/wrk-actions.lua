-- wrk script: POST /actions as `zt bench` sends it (actor bench-agent, action bench.read, a
-- fresh resource per request), with the agent's bearer token when ZT_AGENT_TOKEN is set, and
-- a closing JSON line with the percentiles wrk itself does not print.
-- Usage: wrk -t1 -c32 -d10s -s scripts/wrk-actions.lua http://127.0.0.1:PORT
-- (the actor must be registered and the action allowed first: `zt bench --keep --duration 1`).
wrk.method = "POST"
wrk.path = "/actions"
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("ZT_AGENT_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
local actor = os.getenv("ZT_BENCH_ACTOR") or "bench-agent"
local action = os.getenv("ZT_BENCH_ACTION") or "bench.read"
local n = 0

request = function()
  n = n + 1
  local body = string.format('{"actor":"%s","action":"%s","resource":"wrk-%d"}', actor, action, n)
  return wrk.format(nil, nil, nil, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors
  local failed = errors.connect + errors.read + errors.write + errors.timeout + errors.status
  io.write(string.format(
    '{"requests":%d,"duration_s":%.3f,"per_s":%.0f,"errors":%d,"non_2xx":%d,' ..
    '"latency_ms":{"mean":%.3f,"p50":%.3f,"p90":%.3f,"p99":%.3f,"p999":%.3f,"max":%.3f}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    failed, errors.status, latency.mean / 1000,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
