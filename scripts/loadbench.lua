-- wrk script for scripts/loadbench.sh.
--   TOKENS=FILE      POST with "Authorization: Bearer <token>", cycling through FILE's lines
--                    (tokenvend); otherwise the request set up by wrk's -H/-s defaults plus
--                    BODY_FILE and BEARER (the stand-in's TokenRequest).
--   DELAY_MS=N       pause on each connection between a response and the next request, N ms
--                    on average (a paced load instead of a saturating one).
-- At the end it prints one line: RESULT key=value ...

wrk.method = "POST"

local tokens = {}
local tokens_file = os.getenv("TOKENS")
if tokens_file and tokens_file ~= "" then
  for line in io.lines(tokens_file) do
    if line ~= "" then tokens[#tokens + 1] = line end
  end
end

local body_file = os.getenv("BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "r"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json"
end
local bearer = os.getenv("BEARER")
if bearer and bearer ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. bearer
end

local next_token = 0
function setup(thread)
  math.randomseed(os.time())
end

function init(args)
  -- Threads start at different tokens (each thread has its own Lua state).
  next_token = math.random(#tokens > 0 and #tokens or 1) - 1
end

if #tokens > 0 then
  request = function()
    next_token = next_token % #tokens + 1
    return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[next_token] })
  end
end

-- Exponentially distributed pauses (mean DELAY_MS): arrivals that are not synchronised across
-- connections, as from many independent pipelines. wrk truncates to whole milliseconds.
local delay_ms = tonumber(os.getenv("DELAY_MS") or "") or 0
if delay_ms > 0 then
  delay = function() return -delay_ms * math.log(1 - math.random()) + 0.5 end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d non2xx=%d socket_errors=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
