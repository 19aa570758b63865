-- wrk's request script for the bench: every request counted by its answer, and one JSON
-- line of figures at the end (bench/wrk.py reads it).
--   wrk -t2 -c32 -d10s -s bench/http.lua http://127.0.0.1:5000 -- insert BENCHW12345
--   wrk -t1 -c1 -d5s -s bench/http.lua http://127.0.0.1:5000 -- get /livez
-- "insert" POSTs a new record each time (SRN: the prefix, the thread, a sequence number)
-- and expects 201; "get" GETs the path and expects 200.
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  mode, argument = args[1], args[2]
  expected = (mode == "insert") and 201 or 200
  sent, failed = 0, 0
end

function request()
  sent = sent + 1
  if mode == "insert" then
    local body = string.format('{"Name": "Bench", "SRN": "%s%d%07d", "Section": "B"}', argument, id, sent)
    return wrk.format("POST", "/insert_record", {["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", argument)
end

function response(status, headers, body)
  if status ~= expected then failed = failed + 1 end
end

function done(summary, latency, requests)
  local failures = 0
  for _, thread in ipairs(threads) do failures = failures + thread:get("failed") end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "p50_us": %d, "p99_us": %d, "unexpected": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99), failures,
    e.connect + e.read + e.write + e.timeout))
end
