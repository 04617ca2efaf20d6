-- aggregator: collects results "res:N:WORKER:RESULT" and keeps the totals
-- in nb.state; prints a one-line summary every config.report_every
-- (default "1s", measured on the spikes' own timestamps) and at shutdown.
--
-- nb.state: total, by_worker[name], bad (unparsable payloads),
-- duplicates (a result number seen twice), highest (largest N seen).
local units = require("neuronbus.units")

local tonumber = tonumber
local match = string.match
local concat = table.concat
local sort = table.sort
local pairs = pairs
local print = print
local assert = assert

local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.total = s.total or 0
  s.bad = s.bad or 0
  s.duplicates = s.duplicates or 0
  s.highest = s.highest or 0
  s.by_worker = s.by_worker or {}
  s.low = s.low or 0     -- every result 1..low has arrived
  s.seen = s.seen or {}  -- results above low that arrived early
  s.reported = s.reported or 0 -- total at the last summary
  s.every_ns = assert(units.duration(config.report_every or "1s"))
  s.quiet = config.quiet
end

-- Returns "w1 12, w2 11" in name order.
local function by_worker(s)
  local names = {}
  for name in pairs(s.by_worker) do
    names[#names + 1] = name
  end
  sort(names)
  for i = 1, #names do
    names[i] = names[i] .. " " .. s.by_worker[names[i]]
  end
  return concat(names, ", ")
end

local function summary(nb, label)
  local s = nb.state
  if not s.quiet then
    print(("%s: %s %d results (+%d), by worker: %s%s"):format(
      nb.name, label, s.total, s.total - s.reported, by_worker(s),
      s.duplicates + s.bad > 0
        and (", %d duplicates, %d unreadable"):format(s.duplicates, s.bad) or ""))
  end
  s.reported = s.total
end

function agent.on_spike(spike, nb)
  local s = nb.state
  local n, worker = match(spike:payload(), "^res:(%d+):([^:]+):")
  if not n then
    s.bad = s.bad + 1
    return
  end
  n = tonumber(n)
  if n <= s.low or s.seen[n] then
    s.duplicates = s.duplicates + 1
    return
  end
  s.seen[n] = true
  while s.seen[s.low + 1] do -- keep only the results that came early
    s.low = s.low + 1
    s.seen[s.low] = nil
  end
  s.total = s.total + 1
  s.by_worker[worker] = (s.by_worker[worker] or 0) + 1
  if n > s.highest then
    s.highest = n
  end
  local now = tonumber(spike.timestamp_ns)
  s.last_ns = s.last_ns or now
  if now - s.last_ns >= s.every_ns then
    s.last_ns = now
    summary(nb, "so far")
  end
end

function agent.on_stop(nb)
  summary(nb, "final")
end

return agent
