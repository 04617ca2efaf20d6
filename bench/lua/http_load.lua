-- bench http load: on its first tick starts config.inflight tasks, each
-- looping GET config.url forever (the bench closes the runtime); counts
-- answers in nb.state.ok and anything else in nb.state.bad.
local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.url, s.inflight, s.ok, s.bad = config.url, config.inflight, 0, 0
end

local function loop(nb)
  local s = nb.state
  while true do
    local status = nb.http.request{ url = s.url, timeout = "30s" }
    if status == 200 then s.ok = s.ok + 1 else s.bad = s.bad + 1 end
  end
end

function agent.tick(nb)
  local s = nb.state
  if s.started then return end
  s.started = true
  for _ = 1, s.inflight do assert(nb:spawn(loop, nb)) end
end

function agent.on_spike() end

return agent
