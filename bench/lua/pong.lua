-- bench pong: answers every ball to whoever sent it.
local error = error
local PAYLOAD = "NBbench!"

local agent = {}

function agent.on_spike(spike, nb)
  local ok, err = nb:fire_to(spike.source, PAYLOAD)
  if not ok then error("pong: " .. err) end
end

return agent
