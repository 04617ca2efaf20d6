-- bench task loop: one task, spawned at init, that yields config.n times
-- with nb:sleep(0) (each step: one resume entry, a coroutine resume, a
-- requeue) and counts its steps in nb.state.steps; the bench reads the
-- count back (nb_rt_state_dump) and requires exactly n.
local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.steps = 0
  s.done = false
  local n = config.n
  local t, err = nb:spawn(function()
    local steps = 0
    for _ = 1, n do
      nb:sleep(0)
      steps = steps + 1
    end
    s.steps = steps
    s.done = true
  end)
  if not t then error("task_loop: " .. tostring(err)) end
end

-- No spikes come: on_spike is required of every agent.
function agent.on_spike() end

return agent
