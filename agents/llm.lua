-- llm: asks an OpenAI-compatible chat endpoint (llama.cpp's server,
-- Ollama, or a hosted API) and streams the answer back, token by token.
--
-- Each spike's payload is a prompt. The answer goes to whoever asked
-- (spike.source) as spikes:
--   "token <text>"    one per piece of the answer, in order
--   "done"            after the last token
--   "error <message>" instead, on a timeout, a refused connection or an
--                     HTTP error status (the API's own message when it
--                     sent one)
--
-- config:
--   url          the endpoint, e.g. "http://127.0.0.1:8080/v1/chat/completions"
--                (llama.cpp), "http://127.0.0.1:11434/v1/chat/completions"
--                (Ollama), "https://api.openai.com/v1/chat/completions"
--   model        the model name the API expects
--   api_key_env  the NAME of the environment variable holding the API key
--                (sent as "Authorization: Bearer ..."); nil for none. The
--                key itself never goes in a manifest.
--   system       a system prompt (optional)
--   timeout      the whole answer, default "120s"
--
-- Each prompt is a task (nb:spawn), so many are answered at once while the
-- agent keeps taking spikes. JSON is lua-cjson (Debian's lua-cjson).
local cjson = require("cjson.safe")

local agent = {}

-- Replies wait here when the axon is full; tick sends them, in order.
local function send(nb, to, payload)
  local q = nb.state.outbox
  if q.first > q.last and nb:fire_to(to, payload) then return end
  q.last = q.last + 1
  q[q.last] = { to = to, payload = payload }
end

local function flush(nb)
  local q = nb.state.outbox
  while q.first <= q.last do
    local item = q[q.first]
    if not nb:fire_to(item.to, item.payload) then return end
    q[q.first] = nil
    q.first = q.first + 1
  end
end

function agent.init(nb, config)
  assert(type(config.url) == "string", "llm: config.url is required")
  assert(type(config.model) == "string", "llm: config.model is required")
  local s = nb.state
  s.url, s.model, s.system = config.url, config.model, config.system
  s.timeout = config.timeout or "120s"
  s.key_env = config.api_key_env
  s.outbox = { first = 1, last = 0 }
  s.answered, s.failed = 0, 0
end

-- Returns the API's error message in body (a JSON error object), or body.
local function api_error(body)
  local doc = cjson.decode(body)
  local e = type(doc) == "table" and doc.error
  if type(e) == "table" and type(e.message) == "string" then return e.message end
  if type(e) == "string" then return e end
  return body:sub(1, 200)
end

-- The task answering one prompt for neuron `to`.
local function answer(nb, to, prompt)
  local s = nb.state
  local messages = {}
  if s.system then messages[1] = { role = "system", content = s.system } end
  messages[#messages + 1] = { role = "user", content = prompt }
  local headers = { ["Content-Type"] = "application/json",
                    ["Accept"] = "text/event-stream" }
  local key = s.key_env and os.getenv(s.key_env)
  if key and key ~= "" then headers["Authorization"] = "Bearer " .. key end
  local stream, err = nb.http.stream{
    method = "POST", url = s.url, headers = headers, timeout = s.timeout,
    body = cjson.encode({ model = s.model, messages = messages, stream = true }),
  }
  if not stream then
    s.failed = s.failed + 1
    return send(nb, to, "error " .. err)
  end
  if stream.status ~= 200 then
    local body = {}
    for chunk in stream:chunks() do body[#body + 1] = chunk end
    s.failed = s.failed + 1
    return send(nb, to, ("error HTTP %d from %s: %s"):format(stream.status, s.url,
      api_error(table.concat(body))))
  end
  for ev in stream:events() do
    if ev.data == "[DONE]" then break end
    local chunk = cjson.decode(ev.data)
    local choice = type(chunk) == "table" and type(chunk.choices) == "table"
      and chunk.choices[1]
    local text = type(choice) == "table" and type(choice.delta) == "table"
      and choice.delta.content
    if type(text) == "string" and text ~= "" then send(nb, to, "token " .. text) end
  end
  stream:close()
  if stream.error then
    s.failed = s.failed + 1
    return send(nb, to, "error " .. stream.error)
  end
  s.answered = s.answered + 1
  send(nb, to, "done")
end

function agent.on_spike(spike, nb)
  local prompt = spike:payload()
  local to = spike.source
  local ok, err = nb:spawn(answer, nb, to, prompt)
  if not ok then send(nb, to, "error " .. err) end
end

agent.tick = flush

return agent
