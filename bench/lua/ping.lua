-- bench ping: the C side serves ball 0 (nb_rt_inject); every ball that
-- comes back must be the next one in order, and is answered with the next
-- ball until config.n have come back, or until a spike from itself says
-- stop.
local error, tonumber = error, tonumber
local PAYLOAD = "NBbench!"

local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.n = config.n
  s.peer = config.peer
  s.back = 0
end

function agent.on_spike(spike, nb)
  local s = nb.state
  -- A spike from itself (nb_rt_inject) ends the exchange: the ball still
  -- out comes back and is not served again.
  if spike.source == nb.id then
    s.n = s.back
    return
  end
  if spike.sequence ~= s.back or spike.source ~= s.peer then
    error(("ping: ball %d came back wrong (sequence %d)"):format(
      s.back, tonumber(spike.sequence)))
  end
  s.back = s.back + 1
  if s.back < s.n then
    local ok, err = nb:fire_to(s.peer, PAYLOAD)
    if not ok then error("ping: " .. err) end
  end
end

return agent
