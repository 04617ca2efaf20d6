-- tcp_asker: asks config.to (default "squarer") for the squares of 1..count
-- (default 10), one question per tick, then sends a 100 KB blob and asks
-- for its size; prints every answer and, once all are in, "asker: all N
-- answered". Run it as a pacemaker (threshold = 0, refractory = 0): its
-- tick asks the next question, and asks again one the axon refused (full:
-- backpressure from the link).
local format = string.format

local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.to = config.to or "squarer"
  s.count = config.count or 10
  s.next, s.answers, s.full = 1, 0, 0
end

function agent.tick(nb)
  local s = nb.state
  if s.next > s.count + 1 then return end
  local question
  if s.next <= s.count then
    question = "square " .. s.next
  else
    question = "size " .. string.rep("x", 100000) -- a large payload
  end
  if nb:fire_to(s.to, question) then
    s.next = s.next + 1
  else
    s.full = s.full + 1 -- the link is full or down: ask again next tick
  end
end

function agent.on_spike(spike, nb)
  local s = nb.state
  s.answers = s.answers + 1
  print("asker: " .. spike:payload())
  if s.answers == s.count + 1 then
    print(format("asker: all %d answered", s.answers))
  end
end

function agent.on_stop(nb)
  local s = nb.state
  print(format("asker: asked %d, answered %d, full %d", s.next - 1, s.answers,
    s.full))
end

return agent
