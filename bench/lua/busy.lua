-- bench busy: a CPU-bound consumer. Each spike must be the next one of
-- config.source (sequence, source, the inline "NBbench!"), then costs
-- config.iters rounds of xorshift32 (~1-2 ns each when compiled: the bench
-- calibrates iters to ~5 us a spike). The result is kept in nb.state, so
-- the loop cannot be dropped, and each round depends on the one before, so
-- it cannot overlap with the next spike's.
local bit = require("bit")
local bxor, lshift, rshift, tobit = bit.bxor, bit.lshift, bit.rshift, bit.tobit
local error, tonumber = error, tonumber

local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.got = 0
  s.source = config.source
  s.iters = config.iters
  s.acc = tobit(config.seed or 2463534242)
end

function agent.on_spike(spike, nb)
  local s = nb.state
  local got = s.got
  if spike.sequence ~= got % 4294967296 or spike.source ~= s.source or
     spike.meta ~= 32 or spike.payload_bytes[0] ~= 78 then
    error(("busy %s: spike %d wrong (sequence %d, source %d, meta %d)"):format(
      nb.name, got, tonumber(spike.sequence), tonumber(spike.source),
      tonumber(spike.meta)))
  end
  local x = bxor(s.acc, got)
  if x == 0 then x = 1 end -- xorshift never leaves 0
  for _ = 1, s.iters do
    x = bxor(x, lshift(x, 13))
    x = bxor(x, rshift(x, 17))
    x = bxor(x, lshift(x, 5))
  end
  s.acc = x
  s.got = got + 1
end

return agent
