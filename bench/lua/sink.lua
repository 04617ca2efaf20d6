-- bench sink: checks that every spike is the next one of config.source
-- (sequence, source, payload) and counts them; a wrong spike raises, which
-- the runtime counts as an agent error and the bench turns into a loud
-- failure. The payload checked: the 8-byte inline "NBbench!" (default),
-- config.size bytes in place through spike:view() (length, "N" first, "!"
-- last), or with config.mixed = k the mixed flow's spike i (length
-- sizes[i % k + 1], first, middle and last bytes: bench/lua/sizes.lua).
local error, tonumber = error, tonumber

local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.got = 0
  s.source = config.source
  s.size = config.size or 8
  if config.mixed then
    local sizes = dofile(config.sizes_script)
    s.k = config.mixed
    s.len, s.mid = {}, {}
    for j = 1, s.k do
      s.len[j] = sizes.size(j, s.k)
      s.mid[j] = 64 + j % 32
    end
  end
end

-- Raises with what is wrong about spike number got.
local function wrong(nb, spike, got, what)
  error(("sink %s: spike %d wrong: %s (sequence %d, source %d, meta %d)"):format(
    nb.name, got, what, tonumber(spike.sequence), tonumber(spike.source),
    tonumber(spike.meta)))
end

function agent.on_spike(spike, nb)
  local s = nb.state
  local got = s.got
  if spike.sequence ~= got % 4294967296 or spike.source ~= s.source then
    wrong(nb, spike, got, "not the next spike")
  end
  local k = s.k
  if k then
    local j = got % k + 1
    local p, n = spike:view()
    if not p then wrong(nb, spike, got, n) end
    if n ~= s.len[j] or p[0] ~= 78 or p[n - 1] ~= 33 or p[n / 2] ~= s.mid[j] then
      wrong(nb, spike, got, "payload")
    end
  elseif s.size == 8 then
    if spike.meta ~= 32 or spike.payload_bytes[0] ~= 78 then
      wrong(nb, spike, got, "payload")
    end
  else
    local p, n = spike:view()
    if not p then wrong(nb, spike, got, n) end
    if n ~= s.size or p[0] ~= 78 or p[n - 1] ~= 33 or p[1] ~= 98 then
      wrong(nb, spike, got, "payload")
    end
  end
  s.got = got + 1
end

return agent
