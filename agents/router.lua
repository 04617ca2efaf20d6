-- router: spreads requests round-robin over the workers it discovers, and
-- forwards their results to a sink.
--
-- Workers are found by capability (config.capability, default "work") with
-- nb:discover on first use, and again whenever none was found. A spike
-- whose payload starts with "req:" goes to the next worker; one starting
-- with "res:" (a worker's reply) goes to config.sink when set. Anything the
-- router cannot send yet (no worker, a full axon) waits in order in
-- nb.state.queue and is retried on the next spike or tick: run it as a
-- pacemaker (threshold = 0, refractory = 0) so the retry cannot stall.
local sub = string.sub
local concat = table.concat
local print = print

local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.capability = config.capability or "work"
  s.sink = config.sink
  s.workers = s.workers or {}  -- ids, in discovery (id) order
  s.next = s.next or 1
  s.queue = s.queue or { first = 1, last = 0 } -- items waiting to leave
  s.routed = s.routed or 0
  s.forwarded = s.forwarded or 0
  s.full = s.full or 0
  s.dropped = s.dropped or 0
end

-- Finds the workers; returns how many there are.
local function discover(nb)
  local s = nb.state
  local cards = nb:discover(s.capability)
  local ids, names = {}, {}
  for i = 1, #cards do
    if cards[i].id ~= nb.id then
      ids[#ids + 1] = cards[i].id
      names[#names + 1] = cards[i].name
    end
  end
  s.workers = ids
  if #ids > 0 then
    print(("%s: %d workers with %q: %s"):format(nb.name, #ids, s.capability,
                                                concat(names, ", ")))
  end
  return #ids
end

-- Sends one queued item; returns true when it left.
local function send(nb, item)
  local s = nb.state
  if item.reply then
    if nb:fire_to(s.sink, item.payload) then
      s.forwarded = s.forwarded + 1
      return true
    end
    s.full = s.full + 1
    return false
  end
  if #s.workers == 0 and discover(nb) == 0 then
    s.no_worker = (s.no_worker or 0) + 1
    return false
  end
  if nb:fire_to(s.workers[s.next], item.payload) then
    s.routed = s.routed + 1
    s.next = s.next % #s.workers + 1
    return true
  end
  s.full = s.full + 1
  return false
end

local function push(q, item)
  q.last = q.last + 1
  q[q.last] = item
end

-- Sends queued items in order, stopping at the first that cannot leave.
local function flush(nb)
  local q = nb.state.queue
  while q.first <= q.last do
    if not send(nb, q[q.first]) then
      return
    end
    q[q.first] = nil
    q.first = q.first + 1
  end
  q.first, q.last = 1, 0
end

function agent.on_spike(spike, nb)
  local payload = spike:payload()
  local head = sub(payload, 1, 4)
  local s = nb.state
  if head == "req:" then
    push(s.queue, { payload = payload })
  elseif head == "res:" and s.sink then
    push(s.queue, { payload = payload, reply = true })
  else
    s.dropped = s.dropped + 1 -- not ours: counted, visible in nb.state
    return
  end
  flush(nb)
end

agent.tick = flush

function agent.on_stop(nb)
  local s = nb.state
  print(("%s: %d requests routed over %d workers, %d results forwarded, %d still queued")
    :format(nb.name, s.routed, #s.workers, s.forwarded,
            s.queue.last - s.queue.first + 1))
end

return agent
