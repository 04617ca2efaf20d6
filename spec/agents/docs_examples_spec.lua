-- The examples in README.md and docs/*.md stay true. A fenced block is
-- checked by the marker lines right above it (one or more):
--   <!-- example: same-as FILE -->  the block equals FILE byte for byte;
--   <!-- example: manifest DIR -->  the block loads as a manifest whose
--                                   scripts resolve in DIR;
--   <!-- example: c -->             spec/e2e/docs_examples.sh compiles and
--                                   runs it;
--   <!-- example: sh -->            spec/e2e/docs_examples.sh runs it from
--                                   the repository root;
--   <!-- example: output DIR -->   spec/e2e/docs_examples.sh runs the
--                                   block's "$ COMMAND" in DIR and compares.
-- A marker ending in "pending: WHY" belongs to a feature that has not
-- landed yet: it is skipped until those words are removed.
-- Every relative link names a file that exists.
local lfs = require("lfs")
local manifest = require("neuronbus.manifest")

local function read(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("*a")
  f:close()
  return s
end

-- Returns README.md and every docs/*.md, in name order.
local function texts()
  local out = { "README.md" }
  local docs = {}
  if lfs.attributes("docs", "mode") == "directory" then
    for name in lfs.dir("docs") do
      if name:match("%.md$") then
        docs[#docs + 1] = "docs/" .. name
      end
    end
  end
  table.sort(docs)
  for _, d in ipairs(docs) do
    out[#out + 1] = d
  end
  return out
end

-- Parses a marker line into { kind =, arg =, pending = }, or nil.
local function marker(line)
  local body = line:match("^<!%-%- example: (.-) %-%->$")
  if not body then
    return nil
  end
  local why = body:match("pending: (.*)$")
  body = body:gsub("%s*pending: .*$", "")
  local kind, arg = body:match("^(%S+)%s*(%S*)$")
  if not kind then
    return nil
  end
  return { kind = kind, arg = arg ~= "" and arg or nil, pending = why }
end

-- Returns every fenced block of text as { lang =, line =, code =,
-- markers = { ... } }, line being the line of the opening fence.
local function blocks(text)
  local out, markers, cur, lineno = {}, {}, nil, 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    lineno = lineno + 1
    if cur then
      if line:match("^%s*```$") then
        cur.code = table.concat(cur.lines, "\n") .. "\n"
        cur.lines = nil
        out[#out + 1] = cur
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line
      end
    else
      local lang = line:match("^%s*```(%w*)$")
      local m = marker(line)
      if lang then
        cur = { lang = lang, line = lineno, lines = {}, markers = markers }
        markers = {}
      elseif m then
        markers[#markers + 1] = m
      else
        markers = {}
      end
    end
  end
  return out
end

-- Returns every relative link target in the prose of text (code blocks and
-- `code` spans left out; no scheme, no pure anchor), without its #fragment.
local function links(text)
  local out, prose, fenced = {}, {}, false
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^%s*```") then
      fenced = not fenced
    elseif not fenced then
      prose[#prose + 1] = (line:gsub("`[^`]*`", ""))
    end
  end
  for target in table.concat(prose, "\n"):gmatch("%]%(([^)%s]+)%)") do
    if not target:match("^%a[%w+.-]*:") and not target:match("^#") then
      out[#out + 1] = (target:gsub("#.*$", ""))
    end
  end
  return out
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

describe("documentation examples", function()
  for _, path in ipairs(texts()) do
    local text = read(path) or ""
    for _, b in ipairs(blocks(text)) do
      local where = path .. ":" .. b.line
      for _, m in ipairs(b.markers) do
        if m.pending then
          -- Skipped on purpose: the feature it shows lands later.
        elseif m.kind == "same-as" then
          it(where .. " is a copy of " .. m.arg, function()
            assert.equal(read(m.arg), b.code)
          end)
        elseif m.kind == "manifest" then
          it(where .. " is a valid manifest", function()
            local topo, errs = manifest.load_source(b.code, where, m.arg)
            assert.is_nil(errs, errs and table.concat(errs, "\n"))
            assert.is_table(topo)
          end)
        elseif m.kind ~= "c" and m.kind ~= "sh" and m.kind ~= "output" then
          it(where .. " has a known example marker", function()
            error("unknown example kind \"" .. m.kind .. "\"")
          end)
        end
      end
    end
  end
end)

describe("relative links", function()
  for _, path in ipairs(texts()) do
    it("in " .. path .. " name files that exist", function()
      local missing = {}
      for _, target in ipairs(links(read(path) or "")) do
        local full = dirname(path) .. "/" .. target
        if not lfs.attributes(full) then
          missing[#missing + 1] = target .. " (" .. full .. ")"
        end
      end
      assert.same({}, missing)
    end)
  end
end)
