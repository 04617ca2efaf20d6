-- pong: answers every "ping N" with "pong N" to whoever sent it.
--
-- The reply goes to spike.source: unicast needs no synapse back.
-- A reply the axon refused is kept and sent with the next spike or tick.
local tonumber = tonumber
local match = string.match

local agent = {}

-- Sends every queued reply in order, stopping at the first one refused.
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
    s.returned = s.returned + 1
  end
  q.first, q.last = 1, 0
end

function agent.init(nb)
  nb.state.returned = nb.state.returned or 0
  nb.state.ignored = nb.state.ignored or 0
  nb.state.full = nb.state.full or 0
  nb.state.queue = nb.state.queue or { first = 1, last = 0 }
end

function agent.on_spike(spike, nb)
  local n = tonumber(match(spike:payload(), "^ping (%d+)$"))
  if not n then
    nb.state.ignored = nb.state.ignored + 1
    return
  end
  local q = nb.state.queue
  q.last = q.last + 1
  q[q.last] = { to = spike.source, payload = "pong " .. n }
  flush(nb)
end

agent.tick = flush

return agent
