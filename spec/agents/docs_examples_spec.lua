-- The examples in README.md and docs/*.md stay true. A fenced block is
-- checked by the marker lines right above it (one or more):
--   <!-- example: same-as FILE -->  the block equals FILE byte for byte;
--   <!-- example: manifest DIR -->  the block loads as a manifest whose
--                                   scripts resolve in DIR;
--   <!-- example: c -->             spec/e2e/docs_examples.sh compiles and
--                                   runs it;
--   <!-- example: sh -->            spec/e2e/docs_examples.sh runs it from
--                                   the repository root.
--   <!-- example: output DIR -->   spec/e2e/docs_examples.sh runs the
--                                   block's "$ COMMAND" in DIR and compares.
-- A marker ending in "pending: WHY" belongs to a feature that has not
-- landed yet: it is skipped until those words are removed.
-- Every ```lua and ```c block carries a marker, so no code in the text goes
-- unchecked. README.md stays a front door (at most 300 lines) that links
-- every page of docs/; every relative link names a file (and heading) that
-- exists, and so does every repository path written as `code`.
local lfs = require("lfs")
local manifest = require("neuronbus.manifest")

local README_MAX_LINES = 300

-- Folders whose paths the text may name as `code`, checked to exist.
local TOP = { "core", "runtime", "lua", "agents", "spec", "bench", "docs", ".ci" }

-- Paths a run writes, which a clean clone does not hold.
local GENERATED = {
  ["bench/results.json"] = true,
}

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

-- Returns the lines of text outside fenced blocks.
local function prose(text)
  local out, fenced = {}, false
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^%s*```") then
      fenced = not fenced
    elseif not fenced then
      out[#out + 1] = line
    end
  end
  return out
end

-- Returns every relative link of text's prose (`code` spans left out; no
-- scheme) as { file =, anchor = }: file "" for a link inside the page,
-- anchor nil when the link has none.
local function links(text)
  local out = {}
  for _, line in ipairs(prose(text)) do
    for target in line:gsub("`[^`]*`", ""):gmatch("%]%(([^)%s]+)%)") do
      if not target:match("^%a[%w+.-]*:") then
        local file, anchor = target:match("^([^#]*)#?(.*)$")
        out[#out + 1] = { file = file, anchor = anchor ~= "" and anchor or nil }
      end
    end
  end
  return out
end

-- Returns the set of anchors GitHub makes for the headings of text: lower
-- case, punctuation dropped, spaces as hyphens, "-1", "-2"... for repeats.
local function anchors(text)
  local out = {}
  for _, line in ipairs(prose(text)) do
    local title = line:match("^#+%s+(.-)%s*$")
    if title then
      local slug = title:lower():gsub("[^%w%s_-]", ""):gsub("%s", "-")
      local n, key = 0, slug
      while out[key] do
        n = n + 1
        key = slug .. "-" .. n
      end
      out[key] = true
    end
  end
  return out
end

-- Returns the repository paths named in `code` spans of text's prose (a
-- span with a wildcard or a placeholder names no single path).
local function named_paths(text)
  local out = {}
  for _, line in ipairs(prose(text)) do
    for span in line:gmatch("`([^`]+)`") do
      if not span:find("[*{}<>?]") then
        for token in span:gmatch("[%w_./-]+") do
          local top = token:match("^(%.?[%w_]+)/")
          for _, t in ipairs(TOP) do
            if top == t then
              out[#out + 1] = (token:gsub("[.:]+$", ""))
            end
          end
        end
      end
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
      if b.lang == "lua" or b.lang == "c" then
        it(where .. " (a ```" .. b.lang .. " block) is checked by an example marker", function()
          assert.is_true(#b.markers > 0, where .. ": no <!-- example: ... --> line right above it")
        end)
      end
    end
  end
end)

describe("README.md", function()
  local text = read("README.md") or ""

  it("is a front door of at most " .. README_MAX_LINES .. " lines", function()
    local n = select(2, text:gsub("\n", "\n"))
    assert.is_true(n <= README_MAX_LINES, "README.md has " .. n .. " lines")
  end)

  it("links every page of docs/", function()
    local linked = {}
    for _, l in ipairs(links(text)) do
      linked[l.file] = true
    end
    for _, path in ipairs(texts()) do
      if path ~= "README.md" then
        assert.is_true(linked[path] == true, "README.md does not link " .. path)
      end
    end
  end)
end)

describe("links and paths", function()
  for _, path in ipairs(texts()) do
    local text = read(path) or ""

    it("in " .. path .. " name files and headings that exist", function()
      local missing = {}
      for _, l in ipairs(links(text)) do
        local full = l.file == "" and path or dirname(path) .. "/" .. l.file
        if not lfs.attributes(full) then
          missing[#missing + 1] = l.file .. " (" .. full .. ")"
        elseif l.anchor and full:match("%.md$") and not anchors(read(full))[l.anchor] then
          missing[#missing + 1] = full .. "#" .. l.anchor
        end
      end
      assert.same({}, missing)
    end)

    it("in " .. path .. " name repository paths that exist", function()
      local missing = {}
      for _, p in ipairs(named_paths(text)) do
        if not lfs.attributes(p) and not GENERATED[p] then
          missing[#missing + 1] = p
        end
      end
      assert.same({}, missing)
    end)
  end
end)
