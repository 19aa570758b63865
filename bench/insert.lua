-- wrk's request script for inserts: every request a new record (a unique SRN per
-- thread and request), and every answer that is not 201 counted.
--   wrk -t2 -c32 -d30s -s bench/insert.lua http://127.0.0.1:5000
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  prefix = string.format("W%s%d", os.time() % 100000, id)
  sent, failed = 0, 0
end

function request()
  sent = sent + 1
  local body = string.format('{"Name": "Bench", "SRN": "%s%07d", "Section": "B"}', prefix, sent)
  return wrk.format("POST", "/insert_record", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status ~= 201 then failed = failed + 1 end
end

function done(summary, latency, requests)
  local failures = 0
  for _, thread in ipairs(threads) do failures = failures + thread:get("failed") end
  io.write(string.format("not 201: %d\n", failures))
end
