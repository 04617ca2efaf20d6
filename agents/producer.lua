-- producer: a rate-limited source of requests "req:N:WORD" for a target.
--
-- Run it as a pacemaker (threshold = 0, refractory = 0): tick runs on every
-- tick and spends a budget of config.rate spikes per second, measured in
-- ticks of config.tick (the manifest's tick, default "1ms"; with "free" it
-- sends config.per_tick spikes per tick instead, default 1). A send the
-- axon refuses stays owed and is retried next tick; config.burst (default
-- 8) caps how many ticks' worth of budget can pile up meanwhile.
-- A spike "stop" pauses it and "start" resumes it.
-- config: target (name or id, required), rate (default 100), total
-- (optional: stop after that many), tick, per_tick, burst.
local units = require("neuronbus.units")

local floor = math.floor
local min = math.min
local max = math.max
local print = print
local error = error
local assert = assert
local tostring = tostring

local agent = {}

local WORDS = { "alpha", "bravo", "charlie", "delta", "echo", "foxtrot",
                "golf", "hotel", "india", "juliet", "kilo", "lima" }

function agent.init(nb, config)
  local s = nb.state
  if config.target == nil then
    error("producer: config.target is required (a neuron name or id)")
  end
  s.target = config.target
  s.total = config.total
  s.sent = s.sent or 0
  s.full = s.full or 0
  s.credit = s.credit or 0
  if config.tick == "free" then
    s.per_tick = config.per_tick or 1
  else
    local tick_ns = assert(units.duration(config.tick or "1ms"))
    s.per_tick = (config.rate or 100) * tick_ns / 1e9
  end
  s.max_credit = max(1, s.per_tick * (config.burst or 8))
end

-- Returns the n-th request payload.
local function request(n)
  return "req:" .. n .. ":" .. WORDS[(n - 1) % #WORDS + 1]
end

function agent.tick(nb)
  local s = nb.state
  if s.stopped or (s.total and s.sent >= s.total) then
    return
  end
  s.credit = min(s.credit + s.per_tick, s.max_credit)
  local n = floor(s.credit)
  if s.total then
    n = min(n, s.total - s.sent)
  end
  for _ = 1, n do
    if not nb:fire_to(s.target, request(s.sent + 1)) then
      s.full = s.full + 1 -- backpressure: the budget stays for next tick
      break
    end
    s.sent = s.sent + 1
    s.credit = s.credit - 1
  end
  if s.total and s.sent == s.total then
    print(("%s: sent all %d requests"):format(nb.name, s.total))
  end
end

-- Control: "stop" pauses the producer, "start" resumes it; anything else
-- is counted in nb.state.ignored.
function agent.on_spike(spike, nb)
  local s = nb.state
  local cmd = spike:payload()
  if cmd == "stop" then
    s.stopped = true
  elseif cmd == "start" then
    s.stopped = nil
  else
    s.ignored = (s.ignored or 0) + 1
  end
end

function agent.on_stop(nb)
  local s = nb.state
  if s.sent then -- nil when init failed
    print(("%s: %d requests sent to %s, %d refused by a full axon and retried")
      :format(nb.name, s.sent, tostring(s.target), s.full))
  end
end

return agent
