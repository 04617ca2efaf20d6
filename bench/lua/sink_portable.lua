-- bench sink for bench/bench_sandbox.c: the lua_hop sink's checks (each
-- spike is the next one of config.source: sequence, source, the 8-byte
-- "NBbench!" by its meta and first byte) written with the API a sandboxed
-- agent has, spike:byte(i) instead of spike.payload_bytes, so the same
-- script runs sandboxed and not.
local error, tonumber = error, tonumber

local agent = {}

function agent.init(nb, config)
  nb.state.got = 0
  nb.state.source = config.source
end

function agent.on_spike(spike, nb)
  local s = nb.state
  local got = s.got
  if spike.sequence ~= got % 4294967296 or spike.source ~= s.source
    or spike.meta ~= 32 or spike:byte(1) ~= 78 then
    error(("sink %s: spike %d wrong (sequence %d, source %d, meta %d)"):format(
      nb.name, got, tonumber(spike.sequence), tonumber(spike.source),
      tonumber(spike.meta)))
  end
  s.got = got + 1
end

return agent
