-- Runs the Lua test files given (or every tests/lua/test_*.lua) under the
-- difusa host and ends with "lua: N passed, N failed".
--   difusa tests/lua/run.lua [files...]
-- A test file returns a table of name -> function; a test fails by raising.
local files = { ... }
if #files == 0 then
  local p = io.popen("ls tests/lua/test_*.lua 2>/dev/null")
  for f in p:lines() do files[#files + 1] = f end
  p:close()
end

local passed, failed = 0, 0
for _, file in ipairs(files) do
  local chunk, err = loadfile(file)
  local tests = chunk and chunk() or nil
  if type(tests) ~= "table" then
    print(string.format("[FAIL] %s: %s", file, err or "does not return a table of tests"))
    failed = failed + 1
  else
    local names = {}
    for name in pairs(tests) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local ok, e = xpcall(tests[name], debug.traceback)
      collectgarbage()
      if ok then
        passed = passed + 1
        print(string.format("[PASS] %s::%s", file:match("([^/]+)%.lua$"), name))
      else
        failed = failed + 1
        print(string.format("[FAIL] %s::%s: %s", file:match("([^/]+)%.lua$"), name, e))
      end
    end
  end
end
print(string.format("lua: %d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
