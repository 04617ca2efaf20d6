-- bench sink: checks that every spike is the next one of config.source
-- (sequence, source, the 8-byte "NBbench!" payload) and counts them; a
-- wrong spike raises, which the runtime counts as an agent error and the
-- bench turns into a loud failure.
local error, tonumber = error, tonumber

local agent = {}

function agent.init(nb, config)
  nb.state.got = 0
  nb.state.source = config.source
end

function agent.on_spike(spike, nb)
  local s = nb.state
  local got = s.got
  if spike.sequence ~= got or spike.source ~= s.source or spike.meta ~= 32
     or spike.payload_bytes[0] ~= 78 then
    error(("sink %s: spike %d wrong (sequence %d, source %d, meta %d)"):format(
      nb.name, got, tonumber(spike.sequence), tonumber(spike.source),
      tonumber(spike.meta)))
  end
  s.got = got + 1
end

return agent
