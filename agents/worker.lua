-- worker: does a small job on each request and replies to its sender.
--
-- A request "req:N:TEXT" is answered with "res:N:<worker name>:<result>"
-- sent to spike.source (unicast needs no synapse back). The job is
-- config.job: "upper" (default) upper-cases TEXT, "reverse" reverses it,
-- "hash" gives its 32-bit FNV-1a hash in hex. A reply the axon refuses
-- waits in order in nb.state.queue and is retried on the next spike or
-- tick.
local bit = require("bit")

local byte = string.byte
local match = string.match
local upper = string.upper
local reverse = string.reverse
local tohex = bit.tohex
local bxor = bit.bxor
local tobit = bit.tobit
local lshift = bit.lshift
local error = error

local agent = {}

-- 32-bit FNV-1a of s, as 8 hex digits. The prime 16777619 is 2^24 + 403:
-- multiplying in two exact parts keeps every bit a double would lose.
local function fnv1a(s)
  local h = tobit(0x811c9dc5)
  for i = 1, #s do
    h = bxor(h, byte(s, i))
    h = tobit(lshift(h, 24) + h * 403)
  end
  return tohex(h)
end

local JOBS = { upper = upper, reverse = reverse, hash = fnv1a }

function agent.init(nb, config)
  local s = nb.state
  s.job = config.job or "upper"
  if not JOBS[s.job] then
    error(("worker: unknown config.job %q (upper, reverse or hash)"):format(s.job))
  end
  s.done = s.done or 0
  s.bad = s.bad or 0
  s.full = s.full or 0
  s.queue = s.queue or { first = 1, last = 0 }
end

-- Sends queued replies in order, stopping at the first one refused.
local function flush(nb)
  local s = nb.state
  local q = s.queue
  while q.first <= q.last do
    local item = q[q.first]
    if not nb:fire_to(item.to, item.payload) then
      s.full = s.full + 1
      return
    end
    q[q.first] = nil
    q.first = q.first + 1
  end
  q.first, q.last = 1, 0
end

function agent.on_spike(spike, nb)
  local s = nb.state
  local n, text = match(spike:payload(), "^req:(%d+):(.*)$")
  if not n then
    s.bad = s.bad + 1
    return
  end
  local q = s.queue
  q.last = q.last + 1
  q[q.last] = {
    to = spike.source,
    payload = "res:" .. n .. ":" .. nb.name .. ":" .. JOBS[s.job](text),
  }
  s.done = s.done + 1
  flush(nb)
end

agent.tick = flush

return agent
