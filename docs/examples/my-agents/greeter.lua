-- greeter: answers every spike with a greeting to its sender.
local agent = {}

function agent.init(nb, config)
  nb.state.greeting = config.greeting or "hello"
  nb.state.count = 0
end

function agent.on_spike(spike, nb)
  nb.state.count = nb.state.count + 1
  local ok, err = nb:fire_to(spike.source, nb.state.greeting .. ", " .. spike:payload())
  if not ok then
    nb.state.dropped = (nb.state.dropped or 0) + 1 -- e.g. "axon full: ..."
  end
end

function agent.on_stop(nb)
  print(nb.name .. ": greeted " .. nb.state.count .. " times")
end

return agent
