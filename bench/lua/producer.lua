-- bench producer: a pacemaker (threshold 0, refractory 0) whose tick fires
-- up to config.batch spikes, each with the same payload, to config.target
-- (an id) or, without a target, to every outgoing synapse; it stops after
-- config.n spikes, or (config.stop_on_spike) once any spike reaches it. A
-- refused spike (axon or arena full) is retried on the next tick, so
-- nothing is lost.
--
-- The payload is built once, never per spike: config.size bytes (default
-- 8, the inline "NBbench!"; over 46 bytes it goes to the arena), "N"
-- first and "!" last; or, with config.mixed = k, the k strings of
-- bench/lua/sizes.lua (47 B .. 8 KiB) fired in turn, spike i getting
-- sizes[i % k + 1] (the sink checks it).
local PAYLOAD = "NBbench!" -- one interned string: no allocation per spike

local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.n = config.n
  s.batch = config.batch or 1024
  s.target = config.target
  s.sent = 0
  s.stop_on_spike = config.stop_on_spike
  local size = config.size or 8
  if size == 8 then
    s.payload = PAYLOAD
  else
    s.payload = "N" .. string.rep("b", size - 2) .. "!"
  end
  if config.mixed then
    s.mixed = dofile(config.sizes_script).strings(config.mixed)
    s.k = config.mixed
  end
end

function agent.on_spike(spike, nb)
  if nb.state.stop_on_spike then nb.state.n = nb.state.sent end
end

-- Fires spikes sent .. last - 1 of a mixed flow; returns the new count.
local function fire_mixed(nb, s, sent, last)
  local fire_to, target, strings, k = nb.fire_to, s.target, s.mixed, s.k
  while sent < last and fire_to(nb, target, strings[sent % k + 1]) do
    sent = sent + 1
  end
  return sent
end

function agent.tick(nb)
  local s = nb.state
  local sent = s.sent
  local last = sent + s.batch
  if last > s.n then last = s.n end
  local target = s.target
  local payload = s.payload
  if s.mixed then
    sent = fire_mixed(nb, s, sent, last)
  elseif target then
    local fire_to = nb.fire_to
    while sent < last and fire_to(nb, target, payload) do sent = sent + 1 end
  else
    local broadcast = nb.broadcast
    while sent < last and broadcast(nb, payload) do sent = sent + 1 end
  end
  s.sent = sent
end

return agent
