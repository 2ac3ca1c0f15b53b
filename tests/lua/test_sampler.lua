-- Samplers from Lua: built-in plugins, samplers written in Lua, denoisers
-- written in Lua, errors raised inside callbacks, plugin load errors.
local difusa = require "difusa"
local H = dofile("tests/lua/helpers.lua")
local T = {}

-- The exact denoiser of N(0, s^2) data: D(x, sigma) = x * s^2 / (s^2 + sigma^2).
local s2 = 0.25
local function gaussian(x, sigma) return x * (s2 / (s2 + sigma * sigma)) end

local function sigmas(n) return difusa.sigmas(nil, n, "karras", { sigma_min = 0.03, sigma_max = 14.6 }) end

function T.lists_builtin_samplers()
  local names = {}
  for _, s in ipairs(difusa.samplers()) do names[s.name] = s end
  for _, want in ipairs { "euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddim" } do
    assert(names[want], "sampler " .. want .. " missing from difusa.samplers()")
  end
  assert(names.dpmpp_2m_sde.options:find("eta"), names.dpmpp_2m_sde.options)
end

-- Euler's ODE step in Lua gives what the C plugin gives.
function T.lua_sampler_matches_builtin()
  difusa.sampler.register("lua_euler", function(denoise, x, sig, extra)
    for i = 1, #sig - 1 do
      local d = (x - denoise(x, sig[i])) / sig[i]
      x = x + d * (sig[i + 1] - sig[i])
      if extra.callback then extra.callback { i = i, n = #sig - 1, sigma = sig[i], x = x } end
    end
    return x
  end)
  local x = difusa.randn { 1, 4, 8, 8, seed = 3 } * 14.6
  local sg = sigmas(12)
  local steps = 0
  local a = difusa.sampler("lua_euler")(gaussian, x, sg, { callback = function() steps = steps + 1 end })
  local b = difusa.sampler("euler")(gaussian, x, sg)
  H.eq(steps, 12, "callback calls")
  local va, vb = a:table(), b:table()
  for i = 1, #va do H.near(va[i], vb[i], 1e-5, "element " .. i) end
  -- Euler converges to the exact solution of the probability-flow ODE,
  -- x(0) = x(σ_max)·s / √(s² + σ_max²), at first order in the step count
  local exact = x * (math.sqrt(s2) / math.sqrt(s2 + 14.6 * 14.6))
  local e12 = (b - exact):std()
  local e96 = (difusa.sampler("lua_euler")(gaussian, x, sigmas(96)) - exact):std()
  assert(e96 < e12 / 4 and e96 < 0.02, string.format("Euler error %.4g at 12 steps, %.4g at 96", e12, e96))
  H.raises(function() difusa.sampler.register("euler", function() end) end, "already")
end

function T.stochastic_samplers_are_reproducible()
  local x = difusa.randn { 1, 4, 8, 8, seed = 5 } * 14.6
  local sg = sigmas(10)
  local s = difusa.sampler("dpmpp_2m_sde", { eta = 1 })
  local a = s(gaussian, x, sg, { seed = 11 }):table()
  local b = s(gaussian, x, sg, { seed = 11 }):table()
  local c = s(gaussian, x, sg, { seed = 12 }):table()
  H.eq(a[17], b[17], "same seed")
  assert(a[17] ~= c[17], "another seed gives another sample")
end

function T.errors_in_callbacks_propagate()
  local x = difusa.randn { 1, 4, 4, 4, seed = 1 }
  local sg = sigmas(5)
  local eul = difusa.sampler("euler")
  H.raises(function() eul(function() error("denoiser boom") end, x, sg) end, "denoiser boom")
  H.raises(function() eul(function() return 42 end, x, sg) end, "not a tensor")
  H.raises(function() eul(gaussian, x, sg, { callback = function(st) if st.i == 3 then error("callback boom") end end }) end,
    "callback boom")
  H.raises(function() difusa.sampler("no_such_sampler") end, "unknown sampler 'no_such_sampler' %(known: .*euler")
  H.raises(function() difusa.sampler("ddim", { eta = 1000 })(gaussian, x, sg) end, "eta")
  -- the state is still usable afterwards
  local y = eul(gaussian, x, sg)
  H.eq(#y:shape(), 4)
end

function T.cfg_composes_denoisers()
  local x = difusa.randn { 1, 2, 2, 2, seed = 2 }
  local d = difusa.cfg(function(v) return v * 0.5 end, function(v) return v * 0.25 end, 3.0)
  local got = d(x, 1.0):table()
  local want = (x * (0.25 + 3.0 * 0.25)):table()
  for i = 1, #want do H.near(got[i], want[i], 1e-6) end
end

function T.plugin_load_errors()
  local ok, err = difusa.plugins.load("/nonexistent/plugin.so")
  H.eq(ok, nil); assert(err:find("/nonexistent/plugin.so"), err)
  local dir = "build/release/tests/plugins/"
  local f = io.open(dir .. "bad_abi.so")
  if not f then return end -- the test plugins are built by make test
  f:close()
  ok, err = difusa.plugins.load(dir .. "bad_abi.so")
  H.eq(ok, nil); assert(err:find("bad_abi.so") and err:find("ABI"), err)
  ok, err = difusa.plugins.load(dir .. "no_entry.so")
  H.eq(ok, nil); assert(err:find("no_entry.so"), err)
  -- the built-ins still work afterwards
  assert(difusa.sampler("euler"))
end

return T
