-- bench relay: fires every spike it receives on to config.next with the
-- same payload; a refused spike would be lost, so it raises instead.
local error = error

local agent = {}

function agent.init(nb, config)
  nb.state.next = config.next
end

function agent.on_spike(spike, nb)
  local ok, err = nb:fire_to(nb.state.next, spike:payload())
  if not ok then error("relay: " .. err) end
end

return agent
