-- evaluator: judges "res:N:ANSWER:WORD" (right when ANSWER is WORD
-- upper-cased) and rewards the worker that sent it (spike.source) with
-- nb:reward: score - mean, score 1 when right and 0 when wrong, mean the
-- running mean of the scores (smoothed by config.smoothing, default
-- 0.02), so an answer better than the usual gets a positive reward and a
-- worse one a negative reward. Counts right and wrong answers per worker
-- id in nb.state.right / nb.state.wrong.
local match, upper = string.match, string.upper

local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.alpha = config.smoothing or 0.02
  s.mean = 0.5
  s.right, s.wrong, s.rewarded = {}, {}, 0
end

function agent.on_spike(spike, nb)
  local s = nb.state
  local answer, word = match(spike:payload(), "^res:%d+:([^:]*):(.*)$")
  if not answer then return end
  local src = spike.source
  local score = answer == upper(word) and 1 or 0
  if score == 1 then
    s.right[src] = (s.right[src] or 0) + 1
  else
    s.wrong[src] = (s.wrong[src] or 0) + 1
  end
  if nb:reward(src, score - s.mean) then s.rewarded = s.rewarded + 1 end
  s.mean = s.mean + s.alpha * (score - s.mean)
end

return agent
