-- counter: counts the spikes it receives, by kind and by source, and
-- reports the running total.
--
-- Every config.every spikes (default 100) it fires "count:N" to
-- config.report_to when that is set; at shutdown it prints its totals.
local type = type
local tostring = tostring
local print = print

local agent = {}

local KINDS = { [0] = "excitatory", "inhibitory", "modulatory" }

function agent.init(nb, config)
  local s = nb.state
  s.count = s.count or 0
  s.bytes = s.bytes or 0
  s.by_kind = s.by_kind or { excitatory = 0, inhibitory = 0, modulatory = 0 }
  s.by_source = s.by_source or {}
  s.reports = s.reports or 0
  s.unsent = s.unsent or 0
  s.every = config.every or 100
  s.report_to = config.report_to
end

-- Fires the running total; a refused report is counted, the next one
-- carries the newer total anyway.
local function report(nb)
  local s = nb.state
  if nb:fire_to(s.report_to, "count:" .. s.count) then
    s.reports = s.reports + 1
  else
    s.unsent = s.unsent + 1
  end
end

function agent.on_spike(spike, nb)
  local s = nb.state
  s.count = s.count + 1
  s.bytes = s.bytes + #spike:payload()
  local kind = spike:kind()
  if type(kind) == "number" then
    kind = KINDS[kind]
  end
  s.by_kind[kind] = (s.by_kind[kind] or 0) + 1
  local src = tostring(spike.source)
  s.by_source[src] = (s.by_source[src] or 0) + 1
  if s.report_to and s.count % s.every == 0 then
    report(nb)
  end
end

function agent.on_stop(nb)
  local s = nb.state
  print(("%s: %d spikes (%d bytes): %d excitatory, %d inhibitory, %d modulatory")
    :format(nb.name, s.count, s.bytes, s.by_kind.excitatory,
            s.by_kind.inhibitory, s.by_kind.modulatory))
end

return agent
