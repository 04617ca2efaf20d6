-- sink: keeps every payload it receives, in order, in nb.state.got, and
-- prints each one (config.quiet = true: does not print).
local agent = {}

function agent.init(nb, config)
  nb.state.got = {}
  nb.state.quiet = config.quiet
end

function agent.on_spike(spike, nb)
  local p = spike:payload()
  local got = nb.state.got
  got[#got + 1] = p
  if not nb.state.quiet then print(nb.name .. ": " .. p) end
end

return agent
