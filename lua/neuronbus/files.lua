-- neuronbus.files: nb.files, whole files read and written by an agent's
-- task without blocking the loop (runtime/nb_rt_files.c: libuv fs
-- requests, the blocking I/O on libuv's threadpool).
--
--   local text, err = nb.files.read("data/state.json")  --> bytes | nil, msg
--   local ok, err = nb.files.write("data/state.json", text) --> true | nil, msg
--
-- Only inside a task (nb:spawn). A relative path is relative to the
-- runtime's working directory. write replaces the whole file atomically:
-- a temporary file beside it, renamed over it (a reader sees the old
-- bytes or the new ones, never a mix). At most 64 MiB either way. In the
-- sandbox only paths under the neuron's files directories, resolved (no
-- way out through .. or a symlink); else nil and a message naming the
-- path and the key. Bad arguments raise.

local ffi = require("ffi")
local tasks = require("neuronbus.tasks")

local C = ffi.C
local type, error = type, error
local str_find = string.find

local _M = {}

-- Returns path checked, or raises naming what.
local function check_path(what, path)
  if type(path) ~= "string" or path == "" then
    error(what .. ": expected a path, got " .. (path == "" and "\"\"" or "a " .. type(path)), 3)
  end
  if str_find(path, "\0", 1, true) then error(what .. ": a NUL byte in the path", 3) end
  return path
end

-- Returns the bytes of the file at path, or nil and a message.
function _M.read(path)
  local t = tasks.current("nb.files.read", 2)
  check_path("nb.files.read", path)
  local ev = tasks.wait(t, C.nb_rt_file_read(tasks.cell(), path), "nb.files.read")
  if ev.code ~= 0 then return nil, ev.msg end
  return ev.data or ""
end

-- Writes data as the whole file at path (atomically); returns true, or
-- nil and a message.
function _M.write(path, data)
  local t = tasks.current("nb.files.write", 2)
  check_path("nb.files.write", path)
  if type(data) ~= "string" then
    error("nb.files.write: expected the data as a string, got a " .. type(data), 2)
  end
  local ev = tasks.wait(t, C.nb_rt_file_write(tasks.cell(), path, data, #data),
    "nb.files.write")
  if ev.code ~= 0 then return nil, ev.msg end
  return true
end

return _M
