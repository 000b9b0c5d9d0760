-- wrk script for a fixed number of decisions (scripts/callgrind-decision.sh): POST /actions as
-- wrk-actions.lua sends them; once ZT_BENCH_COUNT answers arrived it writes ZT_BENCH_DONE and
-- stops its thread (wrk itself runs until -d or SIGINT, which the caller sends on that file).
-- A non-200 answer is printed.
wrk.method = "POST"
wrk.path = "/actions"
wrk.headers["Content-Type"] = "application/json"
local limit = tonumber(os.getenv("ZT_BENCH_COUNT") or "10000")
local done_file = os.getenv("ZT_BENCH_DONE")
local n = 0
local answered = 0

request = function()
  n = n + 1
  local body = string.format('{"actor":"bench-agent","action":"bench.read","resource":"wrk-%d"}', n)
  return wrk.format(nil, nil, nil, body)
end

response = function(status, headers, body)
  answered = answered + 1
  if status ~= 200 then io.write("status " .. status .. "\n") end
  if answered == limit then
    if done_file then
      local f = io.open(done_file, "w")
      f:write("done\n")
      f:close()
    end
    wrk.thread:stop()
  end
end
