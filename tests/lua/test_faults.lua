-- Fault injection over a whole tiny txt2img (load, prompt encoding, three CFG sampling steps, VAE decode):
-- the Nth library allocation and every later one fail. Each run must end in an "out of memory" error, or,
-- where the code has a fallback for the allocation that failed, in the very same picture; then the Lua state
-- must still work. Under `make asan-test`, LeakSanitizer checks at exit that the failures freed everything.
-- `make test` tries the first 60 allocations and 240 more spread over the whole run;
-- DIFUSA_FAULTS=N spreads N instead of 240, DIFUSA_FAULTS=all tries every one (tens of thousands:
-- `make check-faults`, under AddressSanitizer; DIFUSA_FAULTS_FROM=N starts there).
local difusa = require "difusa"
local T = {}
local TINY = "tests/fixtures/pipeline/tiny-sd"

local function txt2img()
  local m = assert(difusa.load(TINY))
  local both = m.clip:encode({ "a red circle", "" })
  local den = m.unet:denoiser { cond = both:slice(1, 1), uncond = both:slice(1, 2), cfg = 5 }
  local sigmas = difusa.sigmas(m, 3, "leading", { steps_offset = 1 })
  local g = difusa.generator(1)
  local x = difusa.randn { 1, 4, 8, 8, generator = g } * math.sqrt(sigmas[1] ^ 2 + 1)
  return m.vae:decode(difusa.sampler("euler_ancestral")(den, x, sigmas, { generator = g }))
end

local function same(a, b)
  local d = (a - b):table()
  for i = 1, #d do
    if d[i] ~= 0 then return false end
  end
  return true
end

function T.every_injected_allocation_failure_ends_in_an_error_or_the_same_picture()
  difusa._fail_alloc_after(0)
  local ref = txt2img()
  collectgarbage()
  difusa._fail_alloc_after(0)
  ref = txt2img() -- counted on a warm run: the caching allocator now holds memory, as it will below
  local total = difusa._fail_alloc_after(0)
  local ns = {}
  local want = os.getenv("DIFUSA_FAULTS")
  if want == "all" then
    for n = tonumber(os.getenv("DIFUSA_FAULTS_FROM")) or 1, total do ns[#ns + 1] = n end
  else
    local spread = tonumber(want) or 240
    for n = 1, math.min(60, total) do ns[#ns + 1] = n end
    for k = 1, spread do ns[#ns + 1] = 60 + math.floor(k * (total - 60) / spread) end
  end
  local errors, absorbed = 0, 0
  local t0 = difusa.clock()
  for _, n in ipairs(ns) do
    difusa._fail_alloc_after(n)
    local ok, res = pcall(txt2img)
    difusa._fail_alloc_after(0)
    if ok then
      assert(same(res, ref), string.format("allocation %d failed, the run went on and drew another picture", n))
      absorbed = absorbed + 1
    else
      local msg = tostring(res)
      assert(msg:find("out of memory", 1, true), string.format("allocation %d failed with: %s", n, msg))
      errors = errors + 1
    end
    res = nil
    collectgarbage()
  end
  print(string.format("  %d of the run's %d allocations failed in turn (%.1f s): %d errors, %d absorbed by a " ..
    "fallback with the same picture", #ns, total, difusa.clock() - t0, errors, absorbed))
  assert(errors > 0)
  -- the state still works and draws the same picture
  assert(same(txt2img(), ref), "after the failures the picture changed")
end

return T
