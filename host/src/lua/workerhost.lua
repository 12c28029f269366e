-- workerhost.lua: the Lua half of the `workerhost` module, embedded in the
-- binary and in workerhost.so. It receives the C half (worker, enqueue, log,
-- null, array_mt, ...) and adds the type constructors, wh.types.
--
-- A type is a table whose metatable is Type; the C compiler (lua/lschema.c)
-- reads its fields: kind, is_optional, has_default/default_value, min, max, min_len,
-- max_len, of, min_items, max_items, fields, allow_unknown, values.
local wh = ...

local Type = {}
Type.__index = Type
Type.__name = "wh.Type"
wh._register_type_mt(Type)

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return setmetatable(c, Type)
end

-- Every type is callable with options and returns a new type:
--   t.string{min_len = 1, max_len = 64}, t.integer{min = 0, default = 3}
function Type:__call(opts)
  if type(opts) ~= "table" or getmetatable(opts) == Type then
    error("type options must be a table such as {max_len = 64}", 2)
  end
  local c = copy(self)
  for k, v in pairs(opts) do
    if k == "default" then
      c.has_default, c.default_value = true, v
    elseif k == "optional" then
      c.is_optional = v and true or nil
    else
      c[k] = v
    end
  end
  return c
end

-- T:optional(): the same type, allowed to be absent or null.
function Type:optional()
  local c = copy(self)
  c.is_optional = true
  return c
end

-- T:default(v): the same type, with v used when the value is absent or null
-- (so it is optional too). Checked against the type when the worker loads.
function Type:default(v)
  local c = copy(self)
  c.has_default, c.default_value = true, v
  return c
end

local function as_type(x, what)
  if type(x) == "string" or getmetatable(x) == Type then return x end
  error(what .. ": expected a type (a string such as \"string\" or a wh.types constructor)", 3)
end

local function with(t, opts)
  if opts == nil then return t end
  return t(opts)
end

local types = {}
for _, kind in ipairs { "string", "integer", "number", "boolean", "any" } do
  types[kind] = setmetatable({ kind = kind }, Type)
end

-- t.array(T [, {min_items =, max_items =, default =, optional =}])
function types.array(of, opts)
  return with(setmetatable({ kind = "array", of = as_type(of, "wh.types.array") }, Type), opts)
end

-- t.enum{"low", "high"} or t.enum({"low", "high"}, {default = "low"});
-- values are strings or integers.
function types.enum(values, opts)
  if type(values) ~= "table" or #values == 0 then
    error("wh.types.enum: expected a non-empty list of values", 2)
  end
  local vs = {}
  for i, v in ipairs(values) do vs[i] = v end
  return with(setmetatable({ kind = "enum", values = vs }, Type), opts)
end

-- t.object({field = T, ...} [, {allow_unknown = true, optional =, default =}])
function types.object(fields, opts)
  if type(fields) ~= "table" or getmetatable(fields) == Type then
    error("wh.types.object: expected a table of fields", 2)
  end
  return with(setmetatable({ kind = "object", fields = fields }, Type), opts)
end

-- t.optional(T) is T:optional(), and works on shorthand strings too.
function types.optional(t)
  if type(t) == "string" then
    return t:sub(-1) == "?" and t or t .. "?"
  end
  return as_type(t, "wh.types.optional"):optional()
end

wh.types = types
wh.t = types
return wh
