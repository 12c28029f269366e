-- workerhost.testing: perform workers in busted's own Lua state, through the
-- same C check and the same C path (wh_lworker_perform) as the host, in
-- ForegroundBlocking style. Spies and stubs work because everything runs in
-- this VM. It changes no global of busted's: not os.exit, not package.path.
--
--   local testing = require "workerhost.testing"
--   local app = testing.app()                -- loads ./workers/*.lua
--   local jid, ok, err = app:perform_later("DownloadWorker", {user_guid = "foo"})
--
-- Nested wh.enqueue calls inside perform run at once too and return
-- jid, ok, err. Arguments refused by the check raise an error naming the path.
local wh = ...

local M = {}
local App = {}
App.__index = App

local function load_worker(path)
  local chunk, err = loadfile(path, "t")
  if not chunk then error(err, 0) end
  local def = chunk()
  if not wh._is_worker(def) then
    error(path .. ": the script must return wh.worker{...}, got " .. type(def), 0)
  end
  if def.name == nil then
    local name = wh._name_from_file(path)
    if not wh._valid_name(name) then
      error(path .. ": cannot make a class name from the file name; set name = ...", 0)
    end
    def.name = name
  end
  def.file = path
  return def
end

-- testing.app{root = ".", scripts = "<root>/workers", only = {"a.lua", ...}}
-- Loads every worker script (or only the named files) into this VM and
-- makes wh.enqueue perform jobs at once. Returns the app.
function M.app(opts)
  opts = opts or {}
  local root = opts.root or "."
  local dir = opts.scripts or (root .. "/workers")
  local files
  if opts.only then
    files = {}
    for i, f in ipairs(opts.only) do files[i] = dir .. "/" .. f end
  else
    local list, err = wh._list_scripts(dir)
    if not list then error("workerhost.testing: " .. err, 2) end
    files = list
  end
  local app = setmetatable({ workers = {}, files = {} }, App)
  for _, path in ipairs(files) do
    local def = load_worker(path)
    if app.workers[def.name] then
      error(("workerhost.testing: worker %s is defined twice (%s and %s)"):format(
        def.name, app.files[def.name], path), 2)
    end
    app.workers[def.name] = def
    app.files[def.name] = path
  end
  wh._set_test_app(app.workers)
  return app
end

-- testing.worker(def): an app of one definition (already loaded by the spec).
function M.worker(def)
  if not wh._is_worker(def) then error("workerhost.testing.worker: expected a wh.worker definition", 2) end
  local app = setmetatable({ workers = { [def.name or "Worker"] = def }, files = {} }, App)
  wh._set_test_app(app.workers)
  return app
end

-- app:perform_later(name, args [, opts]) -> jid, ok, err
function App:perform_later(name, args, opts)
  wh._set_test_app(self.workers)
  return wh.enqueue(name, args, opts)
end
App.perform = App.perform_later

-- app:close(): wh.enqueue no longer reaches this app.
function App:close()
  wh._set_test_app(nil)
end

return M
