-- spec/helpers.lua: shared helpers for the specs (not a spec itself: busted
-- only runs files ending in _spec.lua). Temp dirs, files, and running the
-- workerhost command as a user would.
local H = {}

local function trim(s) return (s:gsub("%s+$", "")) end

-- The repo root, absolute: ctest sets WH_SOURCE_DIR; otherwise the current
-- directory (specs are run from the repo root).
H.root = os.getenv("WH_SOURCE_DIR")
if H.root == nil or H.root == "" then
  local p = io.popen("pwd")
  H.root = trim(p:read("a"))
  p:close()
end

-- The command under test.
H.bin = os.getenv("WORKERHOST_BIN")
if H.bin == nil or H.bin == "" then H.bin = H.root .. "/build/workerhost" end

-- Shell quoting with single quotes (safe for any bytes but NUL).
function H.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- A new empty directory under the system temp dir.
function H.tmpdir()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkdir -p " .. H.q(path)))
  return path
end

-- Removes a directory made by H.tmpdir (refuses anything else).
function H.rmdir(path)
  assert(type(path) == "string" and path:match("^/tmp/") and not path:match("%.%."),
    "refusing to remove " .. tostring(path))
  os.execute("rm -rf " .. H.q(path))
end

function H.mkdir(path)
  assert(os.execute("mkdir -p " .. H.q(path)))
end

-- Writes text to path, creating the folders on the way.
function H.write(path, text)
  H.mkdir(path:match("^(.*)/[^/]*$"))
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function H.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- An app root with config/test.yaml (ForegroundBlocking, log level info)
-- and the given worker scripts: files = { ["workers/x.lua"] = "...", ... }.
-- config_extra is appended under `workers:` (e.g. "  max_payload_bytes: 1KB\n").
function H.app_root(files, config_extra)
  local root = H.tmpdir()
  H.write(root .. "/config/test.yaml",
    "workers:\n  mode: ForegroundBlocking\n  concurrency: 1\n  scripts: workers\n" ..
    (config_extra or "") .. "logger:\n  level: info\n")
  H.mkdir(root .. "/workers")
  for path, text in pairs(files or {}) do H.write(root .. "/" .. path, text) end
  return root
end

-- Copies the example workers of the repo into root/workers.
function H.copy_example_workers(root)
  assert(os.execute("cp " .. H.q(H.root .. "/workers") .. "/*.lua " .. H.q(root .. "/workers/")))
end

-- Runs a shell command line; returns its combined stdout+stderr and its exit
-- status (captured with `; echo "EXIT:$?"`).
function H.sh(cmdline)
  local p = assert(io.popen("(" .. cmdline .. ") 2>&1; echo \"EXIT:$?\""))
  local out = p:read("a")
  p:close()
  local body, status = out:match("^(.-)EXIT:(%d+)\n?$")
  return body, tonumber(status)
end

-- Builds the command line for workerhost with the given words (each quoted).
-- opts: cwd (default: H.root), env (table of NAME = value; false unsets),
-- timeout (seconds, default 30).
local function cmdline(words, opts)
  opts = opts or {}
  local parts = {}
  parts[#parts + 1] = "cd " .. H.q(opts.cwd or H.root) .. " &&"
  parts[#parts + 1] = "env -u WORKERHOST_ENV"
  for k, v in pairs(opts.env or {}) do
    if v then parts[#parts + 1] = k .. "=" .. H.q(v) end
  end
  -- a hung command fails its test (status 124) instead of hanging the suite
  parts[#parts + 1] = "timeout " .. (opts.timeout or 30)
  parts[#parts + 1] = H.q(H.bin)
  for _, w in ipairs(words) do parts[#parts + 1] = H.q(w) end
  return table.concat(parts, " ")
end

-- Runs workerhost; returns combined output and exit status.
function H.run(words, opts)
  return H.sh(cmdline(words, opts))
end

-- Runs workerhost; returns stdout, stderr and exit status separately.
function H.run3(words, opts)
  local errfile = os.tmpname()
  local p = assert(io.popen(cmdline(words, opts) .. " 2>" .. H.q(errfile) .. "; echo \"EXIT:$?\""))
  local out = p:read("a")
  p:close()
  local err = H.read(errfile) or ""
  os.remove(errfile)
  local body, status = out:match("^(.-)EXIT:(%d+)\n?$")
  return body, err, tonumber(status)
end

-- LUA_CPATH with relative entries made absolute against the repo root.
function H.absolute_cpath()
  local cpath = os.getenv("LUA_CPATH") or "build/lua/?.so;;"
  local out = {}
  for entry in (cpath .. ";"):gmatch("([^;]*);") do
    if entry ~= "" and entry:sub(1, 1) ~= "/" then entry = H.root .. "/" .. entry:gsub("^%./", "") end
    out[#out + 1] = entry
  end
  return table.concat(out, ";")
end

-- Calls f(...) and returns the error it raised (fails if it did not raise).
function H.error_of(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, got none")
  return err
end

-- The error message without a leading "chunk:line: " position, as
-- luassert's has_error compares it.
function H.strip_pos(msg)
  return (tostring(msg):gsub("^.-:%d+: ", "", 1))
end

return H
