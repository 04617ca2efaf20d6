-- ping: serves a ball to a peer and returns every "pong N" as "ping N+1"
-- until config.rounds balls have come back.
--
-- Run it as a pacemaker (threshold = 0, refractory = 0): its tick, which
-- only runs when the neuron fires, serves the first ball and retries a
-- send the axon refused. config: peer (name or id, default "pong"),
-- rounds (default 10).
local tonumber = tonumber
local tostring = tostring
local print = print
local match = string.match

local agent = {}

-- Sends "ping n" to the peer; on a full axon keeps it for the next tick.
local function send(nb, n)
  local ok = nb:fire_to(nb.state.peer, "ping " .. n)
  if ok then
    nb.state.sent = nb.state.sent + 1
    nb.state.pending = nil
  else
    nb.state.full = nb.state.full + 1
    nb.state.pending = n
  end
end

function agent.init(nb, config)
  local s = nb.state
  s.peer = config.peer or "pong"
  s.rounds = config.rounds or 10
  s.sent = s.sent or 0
  s.returned = s.returned or 0
  s.full = s.full or 0
end

function agent.on_spike(spike, nb)
  local n = tonumber(match(spike:payload(), "^pong (%d+)$"))
  if not n then
    return
  end
  local s = nb.state
  s.returned = s.returned + 1
  if n >= s.rounds then
    s.done = true
    print(("%s: %d rallies played with %s"):format(nb.name, s.returned,
                                                   tostring(s.peer)))
  else
    send(nb, n + 1)
  end
end

function agent.tick(nb)
  local s = nb.state
  if not s.served then
    s.served = true
    send(nb, 1)
  elseif s.pending then
    send(nb, s.pending)
  end
end

return agent
