-- neuronbus.synapses: synapses in an agent's hands (docs/learning.md).
--
--   nb:connect(target [, opts])  -> true, or nil and a message
--       opts: weight (default 1.0), filters ({ kind =, priority =,
--       prefix =, custom = }, as in a manifest), stdp (true, "pair",
--       "trace", "reward" or a table of STDP parameters, as in a manifest),
--       from (a neuron id or name: only with the manifest's rewire = true;
--       default the agent's own neuron). A synapse that exists is
--       replaced. Queued, applied by the runtime after the current tick:
--       it takes effect from the next tick.
--   nb:disconnect(target [, from]) -> true, or nil and a message (no such
--       synapse); applied as connect's changes are. Spikes already routed
--       are delivered; later ones to target go without the synapse.
--   nb:weight(to) / nb:weight(from, to) -> the weight now, or nil and a
--       message when there is no such synapse (a relaxed atomic read).
--   nb:reward(target, r)   -> fires a modulatory spike carrying reward r
--       (a finite number) to target, a neuron id or name; its REWARD-mode
--       incoming synapses turn their eligibility into weight change.
--   nb:reward_region(path, r) -> rewards every neuron of the region
--       subtree; returns how many were sent, or nil and a message.
--
-- Options are checked with the manifest's own rules (neuronbus.manifest),
-- loaded on the first nb:connect, so the messages match the manifest's.

local ffi = require("ffi")
local nbffi = require("neuronbus.ffi")

local C = ffi.C
local type, tostring, pairs, ipairs = type, tostring, pairs, ipairs
local str_format, tbl_concat = string.format, table.concat
local K = nbffi.constants
local E = K.err

local _M = {}

local CELL = nil
local resolve = nil -- neuronbus.agent's name -> id

-- Binds this state's cell and the agent's resolver; returns nothing.
function _M.bind(cell, resolver)
  CELL, resolve = cell, resolver
end

local neurons, check -- neuronbus.manifest.*, on first use
local KIND_BITS = { excitatory = 1, inhibitory = 2, modulatory = 4 }
local OPT_KEYS = { weight = true, filters = true, stdp = true, from = true }

-- Returns the message of a failed request (nb_err_t rc) about a -> b.
local function syn_error(what, rc, a, b)
  if rc == E.EPERM then
    return str_format("%s: %s -> %s: not permitted (an agent changes its own "
      .. "outgoing synapses only, unless its manifest entry has rewire = true)",
      what, tostring(a), tostring(b))
  elseif rc == E.ENOENT then
    return str_format("%s: no synapse %s -> %s", what, tostring(a), tostring(b))
  end
  return what .. ": " .. ffi.string(C.nb_strerror(rc))
end

-- Returns the id of from (nil = -1, the agent's own), or nil, message.
local function from_id(what, from)
  if from == nil then return -1 end
  local id, err = resolve(from)
  if not id then return nil, what .. ": from: " .. err end
  return id
end

-- Fills o (nb_rt_syn_opts_t) from the checked options; returns o.
local function fill(o, weight, st, filters)
  o.weight = weight
  o.mode = -1
  if st then
    o.mode = neurons.STDP_MODE_CODES[st.mode]
    o.a_plus, o.a_minus = st.a_plus, st.a_minus
    o.tau_plus_ms, o.tau_minus_ms = st.tau_plus_ms, st.tau_minus_ms
    o.w_min, o.w_max = st.w_min, st.w_max
    o.lambda, o.alpha = st.lambda, st.alpha
    o.mu_plus, o.mu_minus = st.mu_plus, st.mu_minus
    o.tau_c_ms, o.tau_n_ms, o.baseline = st.tau_c_ms, st.tau_n_ms, st.baseline
  end
  o.kinds, o.min_priority, o.prefix, o.prefix_len, o.custom = 0, -1, nil, 0, nil
  for _, f in ipairs(filters) do
    if f.type == "kind" then
      for _, k in ipairs(f.kinds) do o.kinds = o.kinds + KIND_BITS[k] end
    elseif f.type == "priority" then
      o.min_priority = f.min
    elseif f.type == "prefix" then
      o.prefix, o.prefix_len = f.prefix, #f.prefix
    else
      o.custom = f.name
    end
  end
  return o
end

-- Queues the synapse to target; returns true or nil, message.
function _M.connect(_, target, opts)
  local what = "nb:connect"
  local to, err = resolve(target)
  if not to then return nil, what .. ": " .. err end
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    return nil, what .. ": opts must be a table { weight =, filters =, stdp =, from = }, got a "
      .. type(opts)
  end
  for k in pairs(opts) do
    if not OPT_KEYS[k] then
      return nil, str_format("%s: opts.%s: unknown key (allowed: filters, from, stdp, weight)",
        what, tostring(k))
    end
  end
  local from
  from, err = from_id(what, opts.from)
  if not from then return nil, err end
  neurons = neurons or require("neuronbus.manifest.neurons")
  check = check or require("neuronbus.manifest.check")
  local c = check.new(".")
  local weight = c:number("opts.weight", opts.weight, 1.0)
  local st = neurons.check_stdp(c, "opts.stdp", opts.stdp)
  local filters = neurons.check_filters(c, "opts.filters", opts.filters) or {}
  if #c.errs > 0 then return nil, what .. ": " .. tbl_concat(c.errs, "; ") end
  -- Per call (not shared): another agent entry may interleave in a task.
  -- The prefix and custom strings o points at live in filters, a local of
  -- this frame, and C copies them before it returns.
  local o = fill(ffi.new("nb_rt_syn_opts_t"), weight, st, filters)
  local rc = C.nb_rt_syn_connect(CELL, from, to, o)
  if rc == 0 then return true end
  return nil, syn_error(what, rc, opts.from or "self", target)
end

-- Queues the removal of from -> target; returns true or nil, message.
function _M.disconnect(_, target, from)
  local what = "nb:disconnect"
  local to, err = resolve(target)
  if not to then return nil, what .. ": " .. err end
  local f
  f, err = from_id(what, from)
  if not f then return nil, err end
  local rc = C.nb_rt_syn_disconnect(CELL, f, to)
  if rc == 0 then return true end
  return nil, syn_error(what, rc, from or "self", target)
end

-- Returns the weight of from -> to (nb:weight(to): from is the agent's own
-- neuron), or nil, message.
function _M.weight(_, a, b)
  local from, to = a, b
  if b == nil then from, to = nil, a end
  local t, err = resolve(to)
  if not t then return nil, "nb:weight: " .. err end
  local f
  f, err = from_id("nb:weight", from)
  if not f then return nil, err end
  local w = C.nb_rt_syn_weight(CELL, f, t)
  if w < 0 then
    return nil, str_format("nb:weight: no synapse %s -> %s", tostring(from or "self"),
      tostring(to))
  end
  return w
end

-- Returns the reward payload of r ("%.17g"), or nil, message.
local function reward_text(what, r)
  if type(r) ~= "number" or r ~= r or r == 1 / 0 or r == -1 / 0 then
    return nil, what .. ": reward must be a finite number, got " .. tostring(r)
  end
  return str_format("%.17g", r)
end

-- Fires a modulatory spike carrying reward r to target; true or nil, msg.
function _M.reward(nb, target, r)
  local text, err = reward_text("nb:reward", r)
  if not text then return nil, err end
  local ok
  ok, err = nb:fire({ target = target, kind = "modulatory", payload = text })
  if ok then return true end
  return nil, "nb:reward: " .. tostring(err):gsub("^nb:fire: ", "")
end

-- Rewards every neuron in the region subtree path; returns how many were
-- sent, or nil, message (the first failure; earlier ones were sent).
function _M.reward_region(nb, path, r)
  local text, err = reward_text("nb:reward_region", r)
  if not text then return nil, err end
  if type(path) ~= "string" then
    return nil, "nb:reward_region: path must be a string, got a " .. type(path)
  end
  local n = 0
  for _, card in ipairs(nb:region(path)) do
    if card.id ~= nb.id then
      local ok
      ok, err = nb:fire({ target = card.id, kind = "modulatory", payload = text })
      if not ok then return nil, "nb:reward_region: " .. tostring(err) end
      n = n + 1
    end
  end
  return n
end

return _M
