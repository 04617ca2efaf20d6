-- neuronbus.http: HTTP and HTTPS from an agent's tasks (nb.http), run by
-- libcurl on the runtime's loop (runtime/nb_rt_http.c): a request waits
-- without blocking anyone, and every agent's requests share the loop.
--
--   local status, body, headers = nb.http.request{
--     method = "POST",                 -- default GET, or POST with a body
--     url = "https://host/path",       -- http:// or https://
--     headers = { ["Content-Type"] = "application/json" }, -- or a list
--                                      -- of "Name: value" strings
--     body = "...",                    -- a string (nil: none)
--     timeout = "10s",                 -- or seconds; default 30 s; 0 or
--                                      -- false: no limit
--     follow = true,                   -- follow redirects (default false)
--     cafile = "ca.pem",               -- https: trust the CAs of this PEM
--                                      -- file instead of the system's
--     insecure = true,                 -- https: verify nothing (TESTS
--                                      -- ONLY: anyone can impersonate
--                                      -- the server)
--   }
--   -- https verifies the server's certificate and host name: against the
--   -- system's CAs unless cafile names others.
--   -- status: the HTTP status (a 404 or a 500 is a status, not a
--   -- failure), body: a string (at most 64 MiB), headers: a table of
--   -- lowercase names (repeated headers joined with ", ").
--   -- A failure (timeout, connection refused, bad URL, a body over
--   -- 64 MiB): nil, a message naming the method and URL, and a kind:
--   -- "timeout", "io", "invalid", "too_big" or "closed".
--
--   local s, err, kind = nb.http.stream{ ...the same keys... }
--   -- returns once the response's headers are in: s.status, s.headers
--   for chunk in s:chunks() do ... end      -- each piece as it arrives
--   for ev in s:events() do ... end         -- server-sent events:
--                                           -- { event =, data =, id = }
--   s:read() --> the next chunk; nil at the end; nil, message on failure
--   s.error  --> the failure's message once the stream failed (chunks()
--                and events() then end), nil otherwise
--   s:close() --> stops the transfer (a stream not read to its end
--                should be closed; one collected unread is closed too)
--
-- Only inside a task (nb:spawn): each call raises elsewhere. A task may
-- wait on other things between two reads of a stream: what the stream
-- delivers meanwhile is kept for its next read; past 1 MiB unread the
-- transfer pauses until the task reads.

local ffi = require("ffi")
local nbffi = require("neuronbus.ffi")
local tasks = require("neuronbus.tasks")

local C = ffi.C
local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local setmetatable, getmetatable, newproxy = setmetatable, getmetatable, newproxy
local concat, sort = table.concat, table.sort
local ffi_string = ffi.string

local ERR = nbffi.constants.err

local _M = {}

local KIND = {
  [ERR.ETIMEDOUT] = "timeout",
  [ERR.EIO] = "io",
  [ERR.EINVAL] = "invalid",
  [ERR.ETOOBIG] = "too_big",
  [ERR.ECLOSED] = "closed",
  [ERR.ENOMEM] = "io",
}

local DEFAULT_TIMEOUT_NS = 30e9
local KEYS = { method = true, url = true, headers = true, body = true,
               timeout = true, follow = true, cafile = true, insecure = true }

-- Returns the "Name: value" lines of headers (a map or a list), or nil and
-- a message.
local function header_lines(h, what)
  if h == nil then return "" end
  if type(h) ~= "table" then
    return nil, what .. ": headers must be a table, got a " .. type(h)
  end
  local lines = {}
  local function add(name, value)
    if type(name) ~= "string" or not name:match("^[%w!#$%%&'*+%-.^_`|~]+$") then
      return what .. ": bad header name " .. ("%q"):format(tostring(name))
    end
    if type(value) == "number" then value = tostring(value) end
    if type(value) ~= "string" or value:find("[%z\r\n]") then
      return what .. ": header " .. name .. ": the value must be a string "
        .. "without CR, LF or NUL, got " .. ("%q"):format(tostring(value))
    end
    lines[#lines + 1] = name .. ": " .. value
  end
  local n = #h
  if n > 0 then
    for i = 1, n do
      local line = h[i]
      local name, value
      if type(line) == "string" then name, value = line:match("^([^:]*):%s*(.*)$") end
      if not name then
        return nil, what .. ": headers[" .. i .. "] must be a \"Name: value\" "
          .. "string, got " .. ("%q"):format(tostring(line))
      end
      local err = add(name, value)
      if err then return nil, err end
    end
  else
    local names = {}
    for k in pairs(h) do names[#names + 1] = k end
    sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(names) do
      local err = add(k, h[k])
      if err then return nil, err end
    end
  end
  return concat(lines, "\n")
end

-- Returns the request cdata and what must stay referenced while it is
-- used, or nil and a message.
local function build(o, what, stream)
  if type(o) ~= "table" then
    return nil, what .. ": expected a table { url = ..., method =, headers =, "
      .. "body =, timeout = }, got a " .. type(o)
  end
  for k in pairs(o) do
    if not KEYS[k] then
      return nil, what .. ": unknown key " .. tostring(k) .. " (it takes method, "
        .. "url, headers, body, timeout, follow, cafile, insecure)"
    end
  end
  local url = o.url
  if type(url) ~= "string" then
    return nil, what .. ": url is required (a string), got a " .. type(url)
  end
  if not url:match("^[Hh][Tt][Tt][Pp][Ss]?://[^%s%c]+$") then
    return nil, what .. ": bad URL " .. ("%q"):format(url) .. ": it must start "
      .. "with http:// or https:// and hold no space or control character"
  end
  local body = o.body
  if body ~= nil and type(body) ~= "string" then
    return nil, what .. ": body must be a string, got a " .. type(body)
  end
  local method = o.method or (body and "POST" or "GET")
  if type(method) ~= "string" or not method:match("^%a+$") then
    return nil, what .. ": method must be a word such as \"GET\" or \"POST\", got "
      .. ("%q"):format(tostring(method))
  end
  method = method:upper()
  local hdrs, err = header_lines(o.headers, what)
  if not hdrs then return nil, err end
  local timeout = o.timeout
  local ns = DEFAULT_TIMEOUT_NS
  if timeout == false then
    ns = 0
  elseif timeout ~= nil then
    ns, err = tasks.duration_ns(timeout, what .. ": timeout")
    if not ns then return nil, err end
  end
  if o.follow ~= nil and type(o.follow) ~= "boolean" then
    return nil, what .. ": follow must be a boolean, got a " .. type(o.follow)
  end
  local cafile = o.cafile
  if cafile ~= nil then
    if type(cafile) ~= "string" or cafile == "" then
      return nil, what .. ": cafile must be the path of a PEM file of CA "
        .. "certificates, got " .. (type(cafile) == "string" and "\"\"" or "a " .. type(cafile))
    end
    -- A sandboxed agent reaches no file outside nb.files: no probing here.
    local sb = package.loaded["neuronbus.sandbox"]
    if sb and sb.sandboxed then
      return nil, what .. ": cafile is not available in the sandbox (curl "
        .. "would read a file the sandbox does not allow)"
    end
    -- Named now, rather than as curl's "error setting certificate file".
    local f, ferr = io.open(cafile, "rb")
    if f then
      local ok, rerr = f:read(1) -- a directory opens, then fails here
      f:close()
      if not ok and rerr then ferr, f = cafile .. ": " .. tostring(rerr), nil end
    end
    if not f then
      return nil, what .. ": cafile: cannot read the PEM file " .. tostring(ferr)
    end
  end
  if o.insecure ~= nil and type(o.insecure) ~= "boolean" then
    return nil, what .. ": insecure must be a boolean, got a " .. type(o.insecure)
  end
  if o.insecure and cafile then
    return nil, what .. ": cafile and insecure = true exclude each other "
      .. "(insecure verifies nothing, so no CA is used)"
  end
  local req = ffi.new("nb_rt_http_req_t")
  req.method = method
  req.url = url
  req.headers = hdrs
  req.headers_len = #hdrs
  if body then
    req.body = body
    req.body_len = #body
  end
  req.timeout_ns = ns
  req.stream = stream and 1 or 0
  req.follow = o.follow and 1 or 0
  req.cafile = cafile
  req.insecure = o.insecure and 1 or 0
  return req, { method, url, hdrs, body, cafile }
end

-- Returns the headers text (data2) as a table of lowercase names.
local function parse_headers(text)
  local h = {}
  if not text then return h end
  for name, value in text:gmatch("([^:\r\n]+):[ \t]*([^\r\n]*)") do
    name = name:lower()
    value = value:gsub("[ \t]+$", "")
    h[name] = h[name] and (h[name] .. ", " .. value) or value
  end
  return h
end

-- Starts the request; returns its id, or nil, message, kind.
local function start(req, what)
  local id = tonumber(C.nb_rt_http(tasks.cell(), req))
  if id < 0 then
    return nil, what .. ": " .. ffi_string(C.nb_strerror(id)), KIND[id] or "io"
  end
  return id
end

-- Returns nil, the message and the kind of a failure event.
local function failure(ev, what)
  return nil, what .. ": " .. (ev.msg or "request failed"), KIND[ev.code] or "io"
end

-- Performs one request inside a task; returns status, body, headers or
-- nil, message, kind.
function _M.request(o)
  local what = "nb.http.request"
  local t = tasks.current(what, 2)
  local req, keep = build(o, what, false)
  if not req then return nil, keep, "invalid" end
  local id, err, kind = start(req, what)
  keep = nil
  if not id then return nil, err, kind end
  local ev = tasks.wait(t, id, what)
  if ev.code ~= 0 then return failure(ev, what) end
  return ev.status, ev.data or "", parse_headers(ev.data2)
end

local Stream = {}
Stream.__index = Stream

-- Returns the next chunk of the body; nil at the end, or nil and the
-- message once the stream failed.
function Stream:read()
  if self.done then return nil, self.error end
  local t = tasks.current("stream:read", 2)
  local ev = tasks.wait(t, self.id, "stream:read")
  if ev.final then
    self.done = true
    if ev.code ~= 0 then
      local _, msg = failure(ev, "nb.http.stream")
      self.error = msg
      return nil, msg
    end
    return nil
  end
  local data = ev.data or ""
  C.nb_rt_consumed(tasks.cell(), self.id, #data) -- lets a paused transfer go on
  return data
end

-- Returns an iterator over the chunks (for chunk in s:chunks()).
function Stream:chunks()
  return function()
    return (self:read())
  end
end

-- Returns an iterator over the server-sent events of the body, each
-- { event = (default "message"), data = (data lines joined with "\n"),
-- id = (or nil) }; comments and events without data are skipped.
function Stream:events()
  local buf, queue, head, tail = "", {}, 1, 0
  local function parse(block)
    local data, event, id = nil, "message", nil
    for line in (block .. "\n"):gmatch("([^\n]*)\n") do
      if line ~= "" and line:sub(1, 1) ~= ":" then
        local field, value = line:match("^([^:]*):? ?(.*)$")
        if field == "data" then
          data = data and (data .. "\n" .. value) or value
        elseif field == "event" then
          event = value
        elseif field == "id" then
          id = value
        end
      end
    end
    if data then
      tail = tail + 1
      queue[tail] = { event = event, data = data, id = id }
    end
  end
  return function()
    while true do
      local ev = queue[head]
      if ev then
        queue[head] = nil
        head = head + 1
        return ev
      end
      local chunk = self:read()
      if not chunk then return nil end
      buf = (buf .. chunk):gsub("\r\n", "\n")
      while true do
        local i = buf:find("\n\n", 1, true)
        if not i then break end
        parse(buf:sub(1, i - 1))
        buf = buf:sub(i + 2)
      end
    end
  end
end

-- Stops the transfer (nothing more is read); returns true.
function Stream:close()
  if not self.done then
    self.done = true
    tasks.cancel_request(self.id)
  end
  return true
end

-- Starts a streaming request inside a task and waits for the response's
-- headers; returns the stream, or nil, message, kind.
function _M.stream(o)
  local what = "nb.http.stream"
  local t = tasks.current(what, 2)
  local req, keep = build(o, what, true)
  if not req then return nil, keep, "invalid" end
  local id, err, kind = start(req, what)
  keep = nil
  if not id then return nil, err, kind end
  tasks.own(t, id) -- events that come while t waits elsewhere are kept
  local ev = tasks.wait(t, id, what)
  if ev.code ~= 0 then return failure(ev, what) end
  local s = setmetatable({ id = id, status = ev.status,
                           headers = parse_headers(ev.data2),
                           done = ev.final }, Stream)
  -- A stream collected before its end stops its transfer.
  local guard = newproxy(true)
  getmetatable(guard).__gc = function()
    if not s.done then
      s.done = true
      tasks.cancel_request(id)
    end
  end
  s._guard = guard
  return s
end

return _M
