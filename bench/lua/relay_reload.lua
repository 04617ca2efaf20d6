-- bench relay for the reload rows: forwards every spike to config.next like
-- relay.lua; after a hot reload, the first spike the new version handles
-- stamps nb.state.first_ns with CLOCK_MONOTONIC (the runtime's clock).
-- File-change row: with config.rewrite = N and config.path (this script's
-- path), the N-th spike makes the relay write its own next version (a new
-- file renamed over the script, as an editor saves) with CHANGED_AT set to
-- the time it starts writing (the rename follows within microseconds); the
-- new version copies CHANGED_AT into nb.state.changed_ns at its first spike
-- and, with config.stop_after_reload, ends the run by sending SIGTERM to its
-- own process (nb_rt_run's loop stops cleanly on it).
local ffi = require("ffi")
local error = error

-- The probe (C declarations and a timespec) is made once per state: a
-- reload runs this chunk again, and the bench measures the runtime's
-- reload, not its probe (a cdef that redefines raises, an unwind).
local probe = package.loaded["bench.relay_probe"]
if not probe then
  ffi.cdef [[
    struct nb_bench_ts { long tv_sec; long tv_nsec; };
    int clock_gettime(int clk, struct nb_bench_ts *ts);
    int getpid(void);
    int kill(int pid, int sig);
  ]]
  probe = { ts = ffi.new("struct nb_bench_ts") }
  package.loaded["bench.relay_probe"] = probe
end
local C = ffi.C
local ts = probe.ts
local CHANGED_AT = 0

-- Returns CLOCK_MONOTONIC (1) in ns as a Lua number.
local function now_ns()
  C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end

-- Writes the next version of the script at path: CHANGED_AT set to now,
-- written beside it and renamed over it. Returns nothing; raises on I/O
-- errors.
local function rewrite(path)
  local f = assert(io.open(path, "rb"))
  local src = f:read("*a")
  f:close()
  local tmp = path .. ".new"
  local t0 = now_ns()
  src = src:gsub("local CHANGED_AT = %d+", function()
    return ("local CHANGED_AT = %.0f"):format(t0)
  end, 1)
  f = assert(io.open(tmp, "wb"))
  f:write(src)
  f:close()
  assert(os.rename(tmp, path))
end

local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.next, s.stop = config.next, config.stop_after_reload
  s.rewrite, s.path, s.count = config.rewrite, config.path, 0
end

function agent.on_spike(spike, nb)
  local s = nb.state
  if s.mark then
    s.mark = false
    s.first_ns = now_ns()
    s.changed_ns = CHANGED_AT
    if s.stop then C.kill(C.getpid(), 15) end
  end
  if s.rewrite then
    s.count = s.count + 1
    if s.count >= s.rewrite then
      s.rewrite = nil -- once: the new version sees it gone (nb.state is kept)
      rewrite(s.path)
    end
  end
  local ok, err = nb:fire_to(s.next, spike:payload())
  if not ok then error("relay: " .. err) end
end

function agent.on_reload(nb, old)
  nb.state.mark = true
end

return agent
