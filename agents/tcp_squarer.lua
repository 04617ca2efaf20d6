-- tcp_squarer: answers "square N" with "N^2 = M" and "size <bytes>" with
-- the byte count, to whoever asked (spike.source: a local neuron, or the
-- proxy of a neuron in another process, where the reply then goes).
local tonumber, format = tonumber, string.format

local agent = {}

function agent.init(nb, config)
  nb.state.answered, nb.state.refused = 0, 0
end

function agent.on_spike(spike, nb)
  local q = spike:payload()
  local n = tonumber(q:match("^square (%-?%d+)$"))
  local reply
  if n then
    reply = format("%d^2 = %d", n, n * n)
  elseif q:sub(1, 5) == "size " then
    reply = format("%d bytes", #q - 5)
  else
    reply = "? " .. q:sub(1, 32)
  end
  if nb:fire_to(spike.source, reply) then
    nb.state.answered = nb.state.answered + 1
  else
    nb.state.refused = nb.state.refused + 1
  end
end

function agent.on_stop(nb)
  print(format("squarer: answered %d, refused %d", nb.state.answered,
    nb.state.refused))
end

return agent
