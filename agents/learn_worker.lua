-- learn-worker: answers "req:N:WORD" with "res:N:ANSWER:WORD" to
-- config.evaluator, the answer being WORD upper-cased with probability
-- config.quality (default 1), else lower-cased (a wrong answer). Rewards
-- (modulatory spikes from the evaluator) are for its incoming synapses,
-- not for it: they are counted in nb.state.rewards and otherwise ignored.
-- config.seed seeds its mistakes.
local random, randomseed = math.random, math.randomseed
local match, upper, lower = string.match, string.upper, string.lower

local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.quality = config.quality or 1
  s.evaluator = config.evaluator
  s.answered, s.rewards, s.lost = 0, 0, 0
  randomseed(config.seed or 1)
end

function agent.on_spike(spike, nb)
  local s = nb.state
  if spike:kind() == "modulatory" then
    s.rewards = s.rewards + 1
    return
  end
  local n, word = match(spike:payload(), "^req:(%d+):(.*)$")
  if not n then return end
  local answer = random() < s.quality and upper(word) or lower(word)
  if nb:fire_to(s.evaluator, "res:" .. n .. ":" .. answer .. ":" .. word) then
    s.answered = s.answered + 1
  else
    s.lost = s.lost + 1
  end
end

return agent
