-- learn-router: sends each request to the worker whose synapse from this
-- router has the highest weight (nb:weight), or with probability
-- config.explore (default 0.1) to a random one, so every worker keeps
-- being tried. Workers are discovered by capability (config.capability,
-- default "work"). Counts what each worker was sent in nb.state.sent
-- (by name) and prints the weights every config.report_every requests
-- (0 = never) and at the end. config.seed seeds its choices.
local random, randomseed = math.random, math.randomseed
local format, concat = string.format, table.concat
local sub = string.sub
local print = print

local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.capability = config.capability or "work"
  s.explore = config.explore or 0.1
  s.report_every = config.report_every or 0
  s.sent, s.routed, s.dropped = {}, 0, 0
  randomseed(config.seed or 1)
end

-- Returns the workers' cards (discovered once, again while none).
local function workers(nb)
  local s = nb.state
  if not s.workers or #s.workers == 0 then s.workers = nb:discover(s.capability) end
  return s.workers
end

-- Returns "name weight, ..." for every worker.
local function weights(nb)
  local out = {}
  for _, w in ipairs(workers(nb)) do
    out[#out + 1] = format("%s %.3f (%d)", w.name, nb:weight(w.id) or -1,
      nb.state.sent[w.name] or 0)
  end
  return concat(out, ", ")
end

-- Returns the card of the worker to send the next request to.
local function pick(nb)
  local ws = workers(nb)
  if #ws == 0 then return nil end
  if random() < nb.state.explore then return ws[random(#ws)] end
  local best, bw = nil, -1
  for _, w in ipairs(ws) do
    local x = nb:weight(w.id) or 0
    if x > bw then best, bw = w, x end
  end
  return best
end

function agent.on_spike(spike, nb)
  local p = spike:payload()
  if sub(p, 1, 4) ~= "req:" then return end
  local s = nb.state
  local w = pick(nb)
  if not w or not nb:fire_to(w.id, p) then
    s.dropped = s.dropped + 1
    return
  end
  s.sent[w.name] = (s.sent[w.name] or 0) + 1
  s.routed = s.routed + 1
  if s.report_every > 0 and s.routed % s.report_every == 0 then
    print(format("%s: %d routed; weight (sent): %s", nb.name, s.routed, weights(nb)))
  end
end

function agent.on_stop(nb)
  local s = nb.state
  if s.sent then
    print(format("%s: final weight (sent): %s; %d dropped", nb.name, weights(nb), s.dropped))
  end
end

return agent
