-- Rewrites the scripts' flag blocks in README.md from their own --help text,
-- between <!-- BEGIN <script> --help --> and <!-- END <script> --help -->.
--   difusa scripts/lib/readme.lua [README.md]      (make readme)
-- With --check it changes nothing and fails when the README is stale (a
-- Lua test runs that, so the documented flags cannot drift).
local args = { ... }
local check = args[1] == "--check"
if check then table.remove(args, 1) end
local path = args[1] or "README.md"
local host = arg and arg[-1] or "difusa"

local f = assert(io.open(path))
local text = f:read("a")
f:close()

local stale = {}
local new = text:gsub("(<!%-%- BEGIN (%w+) %-%-help %-%->\n)(.-)(<!%-%- END %2 %-%-help %-%->)", function(open, script, old, close)
  local p = assert(io.popen(host .. " scripts/" .. script .. ".lua --help"))
  local help = p:read("a")
  p:close()
  local block = "```\n" .. help:gsub("\n*$", "\n") .. "```\n"
  if block ~= old then stale[#stale + 1] = script end
  return open .. block .. close
end)

if check then
  if #stale > 0 then
    io.stderr:write(path .. ": the flags of " .. table.concat(stale, ", ") .. " are out of date: run make readme\n")
    os.exit(1)
  end
  return
end
f = assert(io.open(path, "w"))
f:write(new)
f:close()
