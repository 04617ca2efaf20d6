-- neuronbus.manifest.links: the manifest's TCP link keys, checked with the
-- manifest's own checker so every problem is reported with its key path.
--
--   listen = "tcp://127.0.0.1:7401",          -- port 0: the system picks
--   peers = { "tcp://127.0.0.1:7402",          -- links this process dials
--             { url = "tcp://127.0.0.1:7403", policy = "drop",
--               queue = 16384, queue_bytes = "16MB",
--               backoff = { "50ms", "5s" } } },
--   accept = { policy = "resend", queue = 16384, queue_bytes = "16MB",
--              allow = { alpha = SECRET } },   -- only these callers
--   secret = SECRET,                           -- the cluster's secret
--   encrypt = false,                           -- ask peers to encrypt
--   max_payload = "1MB",                       -- largest payload from peers
--   link_limits = { handshake_timeout = "5s", max_pending = 64,
--                   pending_per_addr = 16, max_links = 256,
--                   links_per_addr = 64, proxies_per_peer = 64,
--                   frame_timeout = "30s", rx_buffer = "64MB",
--                   keepalive = "10s", idle_timeout = "30s" },
--   neurons = { parser = { remote = "tcp://127.0.0.1:7402/parser" },
--               ui = { remote = "peer://frontend/ui" } }
--
-- A peer table also takes secret = SECRET and encrypt = true. A SECRET is
-- { file = "path" } (the file's bytes, one trailing newline dropped; a
-- relative path resolves against the manifest's folder), { env = "NAME" }
-- (an environment variable), or the secret itself as a string; at least
-- 16 bytes (docs/links.md). Listening beyond loopback needs a secret.
--
-- Normalized (what neuronbus.manifest returns; defaults from
-- runtime/nb_rt_defaults.h through neuronbus.layout):
--   topo.transport = nil when the manifest has none of these keys, else
--     { listen = url | nil, max_payload = bytes,
--       secret = bytes | nil, encrypt = true | nil,
--       allow = nil | { { cortex, secret = bytes } },   -- sorted by cortex
--       accept = { policy, queue, queue_bytes },
--       limits = { handshake_timeout_ms, max_pending, pending_per_addr,
--                  max_links, links_per_addr, proxies_per_peer,
--                  frame_timeout_ms, rx_buffer, keepalive_ms,
--                  idle_timeout_ms },
--       peers = { { url, policy, queue, queue_bytes, backoff_min_ms,
--                   backoff_max_ms, secret = bytes | nil,
--                   encrypt = true | nil } } }
--                                    -- every tcp:// remote's peer too
--   neuron.remote = { url = "tcp://h:p", neuron = name }
--                 | { cortex = name, neuron = name }
-- Pure Lua, no FFI: the URL grammar mirrors nb_link_parse_url
-- (runtime/nb_link_wire.h): numeric IPv4, or IPv6 in brackets.

local units = require("neuronbus.units")
local check = require("neuronbus.manifest.check")

local type, ipairs, tonumber, next, pairs = type, ipairs, tonumber, next, pairs
local str_match, str_find, str_format = string.match, string.find, string.format
local os_getenv, io_open, tbl_sort = os.getenv, io.open, table.sort
local floor = math.floor
local join, suggest, is_array, K = check.join, check.suggest, check.is_array, check.K

local _M = {}

local POLICIES = { "resend", "drop" }
local DEFAULT_QUEUE = K.LINK_QUEUE_DEFAULT
local DEFAULT_QUEUE_BYTES = K.LINK_QUEUE_BYTES_DEFAULT
local DEFAULT_BACKOFF_MIN_MS = K.LINK_BACKOFF_MIN_MS
local DEFAULT_BACKOFF_MAX_MS = K.LINK_BACKOFF_MAX_MS
local DEFAULT_MAX_PAYLOAD = K.FRAME_PAYLOAD_DEFAULT_MAX
local MAX_QUEUE = K.LINK_QUEUE_MAX
local MAX_U32 = check.MAX_U32
local MAX_PAYLOAD = K.LINK_PAYLOAD_LIMIT
-- NB_LINK_NAME_MAX of runtime/nb_link_wire.h (the HELLO's name field).
local NAME_MAX = 255

-- The keys of a peer table and of the accept table.
_M.PEER_KEYS = { "url", "policy", "queue", "queue_bytes", "backoff",
                 "secret", "encrypt" }
_M.ACCEPT_KEYS = { "policy", "queue", "queue_bytes", "allow" }
-- The top-level keys checked here.
_M.TOP_KEYS = { "listen", "peers", "accept", "max_payload", "link_limits",
                "secret", "encrypt", "nats" }

-- The keys of link_limits: the counts (integers) and the durations, with
-- their defaults from runtime/nb_rt_defaults.h.
local LIMIT_COUNTS = {
  max_pending = K.LINK_MAX_PENDING, pending_per_addr = K.LINK_PENDING_PER_ADDR,
  max_links = K.LINK_MAX_LINKS, links_per_addr = K.LINK_LINKS_PER_ADDR,
  proxies_per_peer = K.LINK_PROXIES_PER_PEER,
}
local LIMIT_TIMES = {
  handshake_timeout = K.LINK_HANDSHAKE_TIMEOUT_MS,
  frame_timeout = K.LINK_FRAME_TIMEOUT_MS,
  keepalive = K.LINK_KEEPALIVE_MS, idle_timeout = K.LINK_IDLE_TIMEOUT_MS,
}
_M.LIMIT_KEYS = { "rx_buffer" }
for k in pairs(LIMIT_COUNTS) do _M.LIMIT_KEYS[#_M.LIMIT_KEYS + 1] = k end
for k in pairs(LIMIT_TIMES) do _M.LIMIT_KEYS[#_M.LIMIT_KEYS + 1] = k end
table.sort(_M.LIMIT_KEYS)
local SECRET_MIN = K.LINK_SECRET_MIN

-- Returns true when s is a name a link can carry: 1..255 bytes, no control
-- characters, no "/" (it separates a peer's cortex from its neurons).
local function link_name_ok(s)
  return type(s) == "string" and #s >= 1 and #s <= NAME_MAX
    and not str_find(s, "[%c/]")
end

-- Returns true for a dotted-quad IPv4 address.
local function ipv4_ok(h)
  local a, b, c, d = str_match(h, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, o in ipairs({ a, b, c, d }) do
    if #o > 3 or tonumber(o) > 255 then return false end
  end
  return true
end

-- Parses "tcp://HOST:PORT[/NEURON]"; returns host, port, neuron (nil when
-- absent) and the base "tcp://HOST:PORT", or nil and why.
function _M.parse_url(s)
  if type(s) ~= "string" then
    return nil, "expected a url like \"tcp://127.0.0.1:7401\", got "
      .. units.show(s)
  end
  local host, port, rest = str_match(s, "^tcp://(%[[%x:%.]+%]):(%d+)(.*)$")
  if host then
    if not str_find(host, ":") then
      return nil, str_format("bad IPv6 address %s in %s", host, units.show(s))
    end
  else
    host, port, rest = str_match(s, "^tcp://([^:/%[%]]+):(%d+)(.*)$")
    if not host then
      return nil, str_format("expected tcp://HOST:PORT (a numeric IPv4 "
        .. "address, or IPv6 in brackets), got %s", units.show(s))
    end
    if not ipv4_ok(host) then
      return nil, str_format("bad host %s in %s: use a numeric IPv4 address "
        .. "(names are not resolved) or [IPv6]", units.show(host), units.show(s))
    end
  end
  if #port > 5 or tonumber(port) > 65535 then
    return nil, str_format("port %s is out of range (0..65535) in %s", port,
      units.show(s))
  end
  local neuron
  if rest ~= "" then
    neuron = str_match(rest, "^/(.*)$")
    if not neuron then
      return nil, str_format("unexpected %s after the port in %s",
        units.show(rest), units.show(s))
    end
    if not link_name_ok(neuron) then
      return nil, str_format("bad neuron name %s in %s (1..255 bytes, no "
        .. "control characters or /)", units.show(neuron), units.show(s))
    end
  end
  return host, tonumber(port), neuron, "tcp://" .. host .. ":" .. port
end

-- Checks an address that names no neuron (listen, a peer); returns the
-- url or nil after reporting. allow_zero: port 0 (ephemeral) is fine.
local function check_address(c, path, v, allow_zero)
  local host, port, neuron, base = _M.parse_url(v)
  if not host then return c:fail(path, port) end
  if neuron then
    return c:fail(path, "%s names a neuron; %s takes tcp://HOST:PORT only",
      units.show(v), path)
  end
  if port == 0 and not allow_zero then
    return c:fail(path, "port 0 cannot be dialled in %s", units.show(v))
  end
  return base
end

-- Returns the bytes of secret spec v (see the header), or nil after
-- reporting. The secret's bytes never appear in a message. min (default
-- the link secret's minimum) is the fewest bytes accepted.
local function check_secret(c, path, v, min)
  local bytes, from
  if type(v) == "string" then
    bytes, from = v, "the secret"
  elseif type(v) == "table" then
    c:keys(path, v, { "file", "env" })
    if (v.file == nil) == (v.env == nil) then
      return c:fail(path, "expected exactly one of file = \"path\" or "
        .. "env = \"NAME\"")
    end
    if v.env ~= nil then
      if type(v.env) ~= "string" or v.env == "" then
        return c:wrong(join(path, "env"), "an environment variable name", v.env)
      end
      bytes = os_getenv(v.env)
      if bytes == nil then
        return c:fail(join(path, "env"), "the environment variable %s is not "
          .. "set", v.env)
      end
      from = "the environment variable " .. v.env
    else
      if type(v.file) ~= "string" or v.file == "" then
        return c:wrong(join(path, "file"), "a file path", v.file)
      end
      local file = check.absolute(v.file, c.basedir)
      local f, err = io_open(file, "rb")
      bytes = f and f:read("*a")
      if f then f:close() end
      if not bytes then
        return c:fail(join(path, "file"), "cannot read the secret file %s: %s",
          file, err or "not readable")
      end
      bytes = str_match(bytes, "^(.-)\r?\n$") or bytes
      from = "the secret file " .. file
    end
  else
    return c:wrong(path, 'a secret: { file = "path" }, { env = "NAME" } or '
      .. "a string", v)
  end
  if min and #bytes < min then
    return c:fail(path, "%s is empty", from)
  end
  if not min and #bytes < SECRET_MIN then
    return c:fail(path, "%s holds %d bytes; a secret needs at least %d "
      .. "(for instance 32 random bytes: head -c 32 /dev/urandom | base64)",
      from, #bytes, SECRET_MIN)
  end
  return bytes
end

-- Returns true when the listen url's host is a loopback address.
local function loopback(url)
  local host = _M.parse_url(url)
  return host == "[::1]" or (host ~= nil and str_find(host, "^127%.") ~= nil)
end

-- Returns the policy name or nil after reporting (with a hint).
local function check_policy(c, path, v)
  if v == nil then return "resend" end
  if v == "resend" or v == "drop" then return v end
  local hint = suggest(v, POLICIES)
  return c:fail(path, "unknown policy %s%s (expected \"resend\" or \"drop\")",
    units.show(v), hint and str_format(', did you mean "%s"?', hint) or "")
end

-- Returns a queue bound in spikes (integer 1..2^24), the default, or nil.
local function check_queue(c, path, v)
  return c:integer(path, v, DEFAULT_QUEUE, 1, MAX_QUEUE)
end

-- Returns a byte size in [lo, hi], the default when nil, or nil.
local function check_bytes(c, path, v, default, lo, hi)
  if v == nil then return default end
  local bytes, err = units.size(v)
  if not bytes then return c:fail(path, err) end
  if bytes < lo or bytes > hi then
    return c:fail(path, "%s is out of range, expected %s to %s", units.show(v),
      units.format_size(lo), units.format_size(hi))
  end
  return bytes
end

-- Returns backoff min and max in ms from { min, max } (durations).
local function check_backoff(c, path, v)
  if v == nil then return DEFAULT_BACKOFF_MIN_MS, DEFAULT_BACKOFF_MAX_MS end
  if type(v) ~= "table" or #v ~= 2 or v[3] ~= nil then
    c:wrong(path, 'a pair of durations { "50ms", "5s" } (first and longest '
      .. "redial delay)", v)
    return nil
  end
  local out = {}
  for i = 1, 2 do
    local ns = c:duration(path .. "[" .. i .. "]", v[i])
    if ns then
      local ms = floor(ns / 1e6 + 0.5)
      if ms < 1 or ms > MAX_U32 then
        c:fail(path .. "[" .. i .. "]", "%s is out of range, expected 1ms to "
          .. "about 49 days", units.show(v[i]))
      else
        out[i] = ms
      end
    end
  end
  if out[1] and out[2] and out[1] > out[2] then
    c:fail(path, "the first delay %s exceeds the longest %s", units.show(v[1]),
      units.show(v[2]))
    return nil
  end
  return out[1], out[2]
end

-- Returns a duration in whole ms from 1ms to about 49 days, the default
-- when nil, or nil after reporting.
local function check_ms(c, path, v, default)
  if v == nil then return default end
  local ns = c:duration(path, v)
  if not ns then return nil end
  local ms = floor(ns / 1e6 + 0.5)
  if ms < 1 or ms > MAX_U32 then
    return c:fail(path, "%s is out of range, expected 1ms to about 49 days",
      units.show(v))
  end
  return ms
end
_M.check_ms, _M.check_secret, _M.link_name_ok = check_ms, check_secret, link_name_ok
_M.check_bytes = check_bytes

-- Checks link_limits (v at path); returns the normalized limits (every
-- default filled) or nil after reporting.
local function check_limits(c, path, v)
  local out = { rx_buffer = K.LINK_RX_BYTES }
  for k, d in pairs(LIMIT_COUNTS) do out[k] = d end
  for k, d in pairs(LIMIT_TIMES) do out[k .. "_ms"] = d end
  if v == nil then return out end
  local t = c:table(path, v)
  if not t then return nil end
  c:keys(path, t, _M.LIMIT_KEYS)
  local ok = true
  -- In key order, so the problems are listed the same way every time.
  for _, k in ipairs(_M.LIMIT_KEYS) do
    local v, kp = t[k], join(path, k)
    if LIMIT_COUNTS[k] then
      out[k] = c:integer(kp, v, LIMIT_COUNTS[k], 1, K.LINK_COUNT_LIMIT)
      ok = ok and out[k] ~= nil
    elseif LIMIT_TIMES[k] then
      out[k .. "_ms"] = check_ms(c, kp, v, LIMIT_TIMES[k])
      ok = ok and out[k .. "_ms"] ~= nil
    else
      out.rx_buffer = check_bytes(c, kp, v, K.LINK_RX_BYTES, 64 * 1024, 2 ^ 40)
      ok = ok and out.rx_buffer ~= nil
    end
  end
  if not ok then return nil end
  -- A keepalive must arrive before the peer's idle timeout runs out.
  if out.keepalive_ms >= out.idle_timeout_ms then
    return c:fail(join(path, t.keepalive ~= nil and "keepalive" or
      "idle_timeout"), "the keepalive (%d ms) must be shorter than the "
      .. "idle timeout (%d ms)", out.keepalive_ms, out.idle_timeout_ms)
  end
  if out.pending_per_addr > out.max_pending then
    return c:fail(join(path, "pending_per_addr"), "%d exceeds max_pending "
      .. "(%d)", out.pending_per_addr, out.max_pending)
  end
  return out
end

-- Returns one normalized peer, or nil after reporting.
local function check_peer(c, path, v)
  if type(v) == "string" then v = { url = v }
  elseif type(v) ~= "table" then
    return c:wrong(path, 'a url "tcp://HOST:PORT" or a table { url = ..., '
      .. "policy = ... }", v)
  else
    c:keys(path, v, _M.PEER_KEYS)
    if v.url == nil then return c:fail(join(path, "url"), "missing") end
  end
  local p = {
    url = check_address(c, join(path, "url"), v.url, false),
    policy = check_policy(c, join(path, "policy"), v.policy),
    queue = check_queue(c, join(path, "queue"), v.queue),
    queue_bytes = check_bytes(c, join(path, "queue_bytes"), v.queue_bytes,
      DEFAULT_QUEUE_BYTES, 1, MAX_U32),
  }
  p.backoff_min_ms, p.backoff_max_ms = check_backoff(c, join(path, "backoff"),
    v.backoff)
  if v.secret ~= nil then p.secret = check_secret(c, join(path, "secret"), v.secret) end
  if v.encrypt ~= nil then
    p.encrypt = c:boolean(join(path, "encrypt"), v.encrypt) or nil
  end
  if p.url and p.policy and p.queue and p.queue_bytes and p.backoff_min_ms then
    return p
  end
  return nil
end

-- Checks the remote key v (at rp) of neuron spec t (at path); returns the
-- normalized remote or nil after reporting. A remote neuron runs in its
-- peer, so it takes no script, parameters or config.
local function check_remote(c, rp, v, t, n, path)
  for _, k in ipairs({ "script", "threshold", "rest", "leak", "refractory",
                       "config" }) do
    if t[k] ~= nil then
      c:fail(join(path, k), "a remote neuron runs in its peer: it takes no "
        .. "%s (only remote, region(s) and capabilities)", k)
    end
  end
  if type(v) ~= "string" then
    return c:wrong(rp, '"tcp://HOST:PORT/NEURON", "peer://CORTEX/NEURON" or '
      .. '"nats://CORTEX/NEURON"', v)
  end
  -- Loaded here: neuronbus.manifest.nats requires this module.
  if str_match(v, "^nats:") then return require("neuronbus.manifest.nats").remote(c, rp, v) end
  local cortex, neuron = str_match(v, "^peer://([^/]*)/(.*)$")
  if cortex then
    if not link_name_ok(cortex) then
      return c:fail(rp, "bad cortex name %s in %s (1..255 bytes, no control "
        .. "characters or /)", units.show(cortex), units.show(v))
    end
    if not link_name_ok(neuron) then
      return c:fail(rp, "bad neuron name %s in %s (1..255 bytes, no control "
        .. "characters or /)", units.show(neuron), units.show(v))
    end
    return { cortex = cortex, neuron = neuron }
  end
  if str_match(v, "^peer:") then
    return c:fail(rp, "expected peer://CORTEX/NEURON, got %s", units.show(v))
  end
  local host, port, nm, base = _M.parse_url(v)
  if not host then return c:fail(rp, port) end
  if not nm then
    return c:fail(rp, "%s names no neuron: expected tcp://HOST:PORT/NEURON",
      units.show(v))
  end
  if port == 0 then
    return c:fail(rp, "port 0 cannot be dialled in %s", units.show(v))
  end
  return { url = base, neuron = nm }
end

-- The neuron keys checked here, as schema entries (neuronbus.manifest.check).
_M.NEURON_ENTRIES = {
  { key = "remote", check = check_remote },
}

-- Checks the top-level link keys of manifest tbl against the already
-- normalized topo (neurons with their remote field); returns
-- topo.transport or nil when there is nothing to connect.
function _M.check(c, tbl, topo)
  local remotes = {}
  for _, n in ipairs(topo.neurons or {}) do
    if n.remote then remotes[n.name] = n.remote end
  end
  local any = tbl.listen ~= nil or tbl.peers ~= nil or tbl.accept ~= nil
    or tbl.max_payload ~= nil or tbl.secret ~= nil or tbl.encrypt ~= nil
    or tbl.nats ~= nil or next(remotes) ~= nil
  -- A remote neuron's spikes arrive as addressed injections: a synapse
  -- out of one would suggest its broadcasts cross, which they do not.
  if type(tbl.synapses) == "table" then
    for i, s in ipairs(tbl.synapses) do
      if type(s) == "table" and type(s.from) == "string" and remotes[s.from] then
        c:fail(join(join("synapses", i), "from"), "%s is a remote neuron: "
          .. "its spikes arrive addressed over the link, so a synapse cannot "
          .. "start at it (synapses into remote neurons are fine)",
          units.show(s.from))
      end
    end
  end
  local limits = check_limits(c, "link_limits", tbl.link_limits)
  if not any then return nil end
  local tr = { peers = {}, limits = limits }
  if tbl.nats ~= nil then tr.nats = require("neuronbus.manifest.nats").check(c, tbl.nats) end
  for _, n in ipairs(topo.neurons or {}) do
    if n.remote and n.remote.nats and tbl.nats == nil then
      c:fail(join(join("neurons", n.name), "remote"), "a nats:// remote neuron "
        .. "needs the nats section (nats = { url = \"nats://HOST:PORT\" })")
    end
  end
  if tbl.listen ~= nil then
    tr.listen = check_address(c, "listen", tbl.listen, true)
  end
  tr.max_payload = check_bytes(c, "max_payload", tbl.max_payload,
    DEFAULT_MAX_PAYLOAD, 1, MAX_PAYLOAD)
  if tbl.secret ~= nil then tr.secret = check_secret(c, "secret", tbl.secret) end
  if tbl.encrypt ~= nil then tr.encrypt = c:boolean("encrypt", tbl.encrypt) or nil end
  local allow = {}
  tr.accept = { policy = "resend", queue = DEFAULT_QUEUE,
                queue_bytes = DEFAULT_QUEUE_BYTES }
  if tbl.accept ~= nil then
    local a = c:table("accept", tbl.accept)
    if a then
      c:keys("accept", a, _M.ACCEPT_KEYS)
      tr.accept.policy = check_policy(c, "accept.policy", a.policy)
      tr.accept.queue = check_queue(c, "accept.queue", a.queue)
      tr.accept.queue_bytes = check_bytes(c, "accept.queue_bytes",
        a.queue_bytes, DEFAULT_QUEUE_BYTES, 1, MAX_U32)
      if a.allow ~= nil then
        local al = c:table("accept.allow", a.allow)
        if al and (next(al) == nil or is_array(al)) then
          c:wrong("accept.allow", "a table of cortex names to their secrets "
            .. '{ alpha = { file = "alpha.key" } }', al)
        elseif al then
          for name, spec in pairs(al) do
            local path = join("accept.allow", name)
            if not link_name_ok(name) then
              c:fail(path, "bad cortex name %s (1..255 bytes, no control "
                .. "characters or /)", units.show(name))
            else
              local bytes = check_secret(c, path, spec)
              if bytes then allow[#allow + 1] = { cortex = name, secret = bytes } end
            end
          end
          tbl_sort(allow, function(x, y) return x.cortex < y.cortex end)
          tr.allow = allow
        end
      end
    end
  end
  local has_secret = tr.secret ~= nil or (type(tbl.accept) == "table"
    and tbl.accept.allow ~= nil)
  if tr.listen and not loopback(tr.listen) and not has_secret then
    c:fail("listen", "%s is reachable beyond this host, but the links have "
      .. "no secret: anyone who reaches the port could join and send spikes. "
      .. "Set secret = { file = \"...\" } (or accept.allow), or listen on "
      .. "127.0.0.1 (docs/links.md)", tr.listen)
  end
  if tr.encrypt and not has_secret then
    c:fail("encrypt", "encryption needs a secret (its keys derive from it): "
      .. "set secret")
  end
  local seen = {}
  if tbl.peers ~= nil then
    if type(tbl.peers) ~= "table" or not is_array(tbl.peers) then
      c:wrong("peers", "a list of peers { \"tcp://HOST:PORT\", ... }", tbl.peers)
    else
      for i = 1, #tbl.peers do
        local path = join("peers", i)
        local p = check_peer(c, path, tbl.peers[i])
        if p and p.encrypt and not p.secret and tbl.secret == nil then
          c:fail(join(path, "encrypt"), "encryption needs a secret: set "
            .. "secret here or at the top level")
        end
        if p then
          if seen[p.url] then
            c:fail(path, "%s is listed twice (first as peers[%d])", p.url,
              seen[p.url])
          elseif tr.listen and p.url == tr.listen then
            c:fail(path, "%s is this process's own listen address: it would "
              .. "dial itself", p.url)
          else
            seen[p.url] = i
            tr.peers[#tr.peers + 1] = p
          end
        end
      end
    end
  end
  -- A remote's peer need not be listed: it is dialled with the defaults.
  for _, n in ipairs(topo.neurons or {}) do
    local r = n.remote
    if r and r.url and not seen[r.url] then
      if tr.listen and r.url == tr.listen then
        c:fail(join(join("neurons", n.name), "remote"), "%s is this "
          .. "process's own listen address: a remote neuron lives in another "
          .. "process", r.url)
      else
        seen[r.url] = #tr.peers + 1
        tr.peers[#tr.peers + 1] = {
          url = r.url, policy = "resend", queue = DEFAULT_QUEUE,
          queue_bytes = DEFAULT_QUEUE_BYTES,
          backoff_min_ms = DEFAULT_BACKOFF_MIN_MS,
          backoff_max_ms = DEFAULT_BACKOFF_MAX_MS,
        }
      end
    end
  end
  return tr
end

_M.defaults = {
  queue = DEFAULT_QUEUE, queue_bytes = DEFAULT_QUEUE_BYTES,
  backoff_min_ms = DEFAULT_BACKOFF_MIN_MS, backoff_max_ms = DEFAULT_BACKOFF_MAX_MS,
  max_payload = DEFAULT_MAX_PAYLOAD,
}

return _M
