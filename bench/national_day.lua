-- wrk script of bench/national_day.py: replays a file of pre-generated requests at a fixed rate.
-- Arguments (after `--`): the file, the total rate (requests/s), wrk's thread count, a User-Agent.
-- Each line is a request in three parts separated by tabs; the cycle number (4 hex digits) goes
-- between them, so that each replay of the file is a new set of visitors (`_id` and `uid`).
-- Pacing: each thread hands out send slots 1/rate apart on its own clock (LuaJIT's ffi calls
-- gettimeofday: wrk's Lua has no sub-second clock); a connection waits for its slot after each
-- answer, so the rate holds whatever the latency, and wrk times each request from its send.

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } nd_timeval;
int gettimeofday(nd_timeval *tv, void *tz);
]]
local tv = ffi.new("nd_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

local next_id = 0
function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

local a, b, c = {}, {}, {}
local n, i, cycle, step, interval, slot = 0, 0, 0, 1, 1, nil
local headers = {}

function init(args)
  for line in io.lines(args[1]) do
    local p0, p1, p2 = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    if p0 then
      n = n + 1
      a[n], b[n], c[n] = p0, p1, p2
    end
  end
  local threads = tonumber(args[3]) or 1
  interval = 1000.0 * threads / tonumber(args[2])  -- ms between two sends of this thread
  cycle = thread_id or 0
  step = threads
  headers["User-Agent"] = args[4]
end

function delay()
  local t = now_ms()
  if slot == nil or slot < t - 1000 then
    slot = t  -- the start, or a stall of over a second: no burst to catch up
  end
  slot = slot + interval
  local wait = slot - interval - t
  if wait < 0 then return 0 end
  return wait
end

function request()
  i = i + 1
  if i > n then
    i = 1
    cycle = cycle + step
  end
  local tag = string.format("%04x", cycle % 65536)
  return wrk.format("GET", a[i] .. tag .. b[i] .. tag .. c[i], headers)
end
