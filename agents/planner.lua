-- planner: asks the neuron config.llm each of config.prompts (on its first
-- tick), puts each streamed answer together from its "token <text>"
-- spikes, and on "done" sends "answer <text>" to config.sink (or "error
-- <message>" when the llm replied with one). One prompt at a time, so the
-- tokens of two answers never mix.
local agent = {}

function agent.init(nb, config)
  local s = nb.state
  s.llm, s.sink = config.llm or "llm", config.sink or "sink"
  s.prompts, s.next = config.prompts or {}, 1
  s.parts, s.asking = {}, false
end

-- Asks the next prompt, if any is left and none is being answered.
local function ask(nb)
  local s = nb.state
  if s.asking or s.next > #s.prompts then return end
  if nb:fire_to(s.llm, s.prompts[s.next]) then
    s.next, s.asking, s.parts = s.next + 1, true, {}
  end
end

agent.tick = ask

function agent.on_spike(spike, nb)
  local s = nb.state
  local msg = spike:payload()
  local token = msg:match("^token (.*)$")
  if token then
    s.parts[#s.parts + 1] = token
  elseif msg == "done" then
    nb:fire_to(s.sink, "answer " .. table.concat(s.parts))
    s.asking = false
  elseif msg:match("^error ") then
    nb:fire_to(s.sink, msg)
    s.asking = false
  end
end

return agent
