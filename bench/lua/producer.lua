-- bench producer: a pacemaker (threshold 0, refractory 0) whose tick fires
-- up to config.batch spikes, each with the same 8-byte payload, to
-- config.target (an id) or, without a target, to every outgoing synapse;
-- it stops after config.n spikes. A refused spike (axon full) is retried
-- on the next tick, so nothing is lost.
local PAYLOAD = "NBbench!" -- one interned string: no allocation per spike

local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.n = config.n
  s.batch = config.batch or 1024
  s.target = config.target
  s.sent = 0
end

function agent.on_spike(spike, nb) end

function agent.tick(nb)
  local s = nb.state
  local sent = s.sent
  local last = sent + s.batch
  if last > s.n then last = s.n end
  local target = s.target
  if target then
    local fire_to = nb.fire_to
    while sent < last and fire_to(nb, target, PAYLOAD) do sent = sent + 1 end
  else
    local broadcast = nb.broadcast
    while sent < last and broadcast(nb, PAYLOAD) do sent = sent + 1 end
  end
  s.sent = sent
end

return agent
