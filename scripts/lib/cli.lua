-- Command-line parsing for the pipeline scripts: a list of option specs
-- gives both the parser and the --help text (the README's flag tables are
-- generated from that same text, so they cannot drift).
--   { "steps", 20, "number of sampling steps" }          --steps N
--   { "prompt", nil, "what to draw", required = true }   --prompt TEXT
--   { "tiled", false, "decode in tiles" }                 --tiled (a flag)
local M = {}

local function kind(default)
  if type(default) == "boolean" then return "flag" end
  if type(default) == "number" then return "N" end
  return "TEXT"
end

function M.help(name, summary, spec)
  local lines = { string.format("usage: difusa scripts/%s.lua [options]", name), summary, "", "options:" }
  for _, o in ipairs(spec) do
    local k = kind(o[2])
    local flag = "--" .. o[1]:gsub("_", "-") .. (k == "flag" and "" or (" " .. k))
    local dflt = ""
    if o.required then dflt = " (required)"
    elseif o[2] ~= nil and o[2] ~= false and o[2] ~= "" then dflt = " (default: " .. tostring(o[2]) .. ")" end
    lines[#lines + 1] = string.format("  %-22s %s%s", flag, o[3], dflt)
  end
  lines[#lines + 1] = "  --help                 show this help"
  return table.concat(lines, "\n")
end

-- Returns the options table, or prints help / an error and exits.
function M.parse(name, summary, spec, argv)
  local byname, opts = {}, {}
  for _, o in ipairs(spec) do
    byname[o[1]] = o
    opts[o[1]] = o[2]
  end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      print(M.help(name, summary, spec))
      os.exit(0)
    end
    local key, inline = a:match("^%-%-([%w%-_]+)=(.*)$")
    key = key or a:match("^%-%-([%w%-_]+)$")
    if a == "-o" then key = "output" end
    local o = key and byname[(key:gsub("%-", "_"))]
    if not o then
      io.stderr:write(string.format("%s: unknown option '%s' (see --help)\n", name, a))
      os.exit(2)
    end
    local k = kind(o[2])
    if k == "flag" then
      opts[o[1]] = true
    else
      local v = inline
      if v == nil then
        i = i + 1
        v = argv[i]
      end
      if v == nil then
        io.stderr:write(string.format("%s: --%s needs a value\n", name, o[1]))
        os.exit(2)
      end
      if k == "N" then
        local n = tonumber(v)
        if not n then
          io.stderr:write(string.format("%s: --%s expects a number, got '%s'\n", name, o[1], v))
          os.exit(2)
        end
        v = n
      end
      opts[o[1]] = v
    end
    i = i + 1
  end
  for _, o in ipairs(spec) do
    if o.required and opts[o[1]] == nil then
      io.stderr:write(string.format("%s: --%s is required (see --help)\n", name, o[1]))
      os.exit(2)
    end
  end
  return opts
end

return M
