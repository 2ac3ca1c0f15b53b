-- Small assertions for the Lua tests.
local M = {}

function M.near(a, b, tol, what)
  if math.abs(a - b) > (tol or 1e-6) then
    error(string.format("%s: %.9g, expected %.9g", what or "value", a, b), 2)
  end
end

-- Calls f and returns its error message; fails when f does not raise.
function M.raises(f, pattern)
  local ok, err = pcall(f)
  if ok then error("expected an error" .. (pattern and (" matching '" .. pattern .. "'") or ""), 2) end
  err = tostring(err)
  if pattern and not err:find(pattern) then
    error(string.format("error '%s' does not match '%s'", err, pattern), 2)
  end
  return err
end

function M.eq(a, b, what)
  if a ~= b then error(string.format("%s: %s, expected %s", what or "value", tostring(a), tostring(b)), 2) end
end

return M
