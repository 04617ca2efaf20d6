-- The README's agent and manifest examples stay true: a block marked
--   <!-- example: same-as FILE -->     must equal FILE byte for byte;
--   <!-- example: manifest DIR -->     must load as a manifest whose
--                                      scripts resolve in DIR.
-- Each marker is followed by a ```lua block.
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

-- Returns { { kind =, arg =, code =, line = } ... } for every marked block.
local function examples(text)
  local out, want, code, lineno = {}, nil, nil, 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    lineno = lineno + 1
    if code then
      if line == "```" then
        want.code = table.concat(code, "\n") .. "\n"
        out[#out + 1] = want
        want, code = nil, nil
      else
        code[#code + 1] = line
      end
    elseif want and line == "```lua" then
      code = {}
    else
      local kind, arg = line:match("^<!%-%- example: (%S+) (%S+) %-%->$")
      want = kind and { kind = kind, arg = arg, line = lineno } or nil
    end
  end
  return out
end

describe("README.md examples", function()
  local text = read("README.md") or ""
  local found = examples(text)
  if #found == 0 then
    pending("README.md has no marked agent or manifest examples yet")
    return
  end
  for _, ex in ipairs(found) do
    if ex.kind == "same-as" then
      it("line " .. ex.line .. " is a copy of " .. ex.arg, function()
        assert.equal(read(ex.arg), ex.code)
      end)
    elseif ex.kind == "manifest" then
      it("line " .. ex.line .. " is a valid manifest", function()
        local topo, errs = manifest.load_source(ex.code, "README.md:" .. ex.line, ex.arg)
        assert.is_nil(errs, errs and table.concat(errs, "\n"))
        assert.is_table(topo)
      end)
    end
  end
end)
