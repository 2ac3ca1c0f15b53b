-- The tensor API from Lua: constructors, arithmetic, layout, files, errors.
local difusa = require "difusa"
local H = dofile("tests/lua/helpers.lua")
local T = {}

function T.randn_matches_torch()
  -- torch.manual_seed(42); torch.randn(1, 4, 2, 2)[0, 0] (torch's documented first values)
  local x = difusa.randn { 1, 4, 2, 2, seed = 42 }
  local v = x:table()
  H.near(v[1], 1.9269, 1e-4, "x[1]")
  H.near(v[2], 1.4873, 1e-4, "x[2]")
  H.near(v[3], 0.9007, 1e-4, "x[3]")
  H.near(v[4], -2.1055, 1e-4, "x[4]")
  H.eq(x:dtype(), "F32")
  H.eq(x:device(), "cpu")
  local s = x:shape()
  H.eq(#s, 4); H.eq(s[2], 4)
  -- a generator keeps its state: in torch two draws of 16 are one draw of 32
  -- (its 16-wide path transforms the uniforms in blocks of 16)
  local g = difusa.generator(7)
  local a, b = difusa.randn { 16, generator = g }, difusa.randn { 16, generator = g }
  local c = difusa.randn { 32, seed = 7 }
  H.eq(difusa.cat({ a, b }, 1):table()[20], c:table()[20], "state carried")
end

function T.arithmetic_and_broadcasting()
  local a = difusa.from_table({ 1, 2, 3, 4, 5, 6 }, { 2, 3 })
  local b = difusa.from_table({ 10, 20, 30 }, { 3 })
  local v = (a + b):table()
  H.eq(v[1], 11); H.eq(v[6], 36)
  v = (a * 2 - 1):table()
  H.eq(v[3], 5)
  v = (10 - a):table()
  H.eq(v[1], 9)
  v = (6 / a):table()
  H.eq(v[6], 1)
  v = (-a):table()
  H.eq(v[2], -2)
  H.near(a:mean(), 3.5)
  H.near(a:std(), math.sqrt(3.5), 1e-6, "unbiased std")
  v = a:lerp(a * 3, 0.5):table()
  H.eq(v[2], 4)
  v = a:clamp(2, 4):table()
  H.eq(v[1], 2); H.eq(v[6], 4)
end

function T.layout()
  local a = difusa.from_table({ 1, 2, 3, 4, 5, 6 }, { 2, 3 })
  local s = a:slice(2, 2, 3)
  H.eq(s:shape()[2], 2); H.eq(s:table()[1], 2); H.eq(s:table()[4], 6)
  local r = a:reshape(3, -1)
  H.eq(r:shape()[1], 3); H.eq(r:shape()[2], 2)
  local p = a:permute(2, 1)
  H.eq(p:table()[2], 4)
  local c = a:cat(a, 1)
  H.eq(c:shape()[1], 4)
  H.eq(difusa.zeros({ 2, 2 }):table()[4], 0)
  H.eq(difusa.full({ 3 }, 2.5):table()[3], 2.5)
  assert(tostring(a):find("tensor%(2, 3%) F32 on cpu %[1, 2, 3"), tostring(a))
end

function T.save_and_load()
  local path = os.tmpname() .. ".safetensors"
  local a = difusa.randn { 3, 5, seed = 1 }
  assert(a:save(path, "latent"))
  local t = assert(difusa.load_tensors(path))
  H.eq(t.latent:table()[7], a:table()[7])
  os.remove(path)
  local ok, err = difusa.load_tensors("/nonexistent/x.safetensors")
  H.eq(ok, nil); assert(err:find("nonexistent"), err)
end

function T.errors_name_the_argument()
  local a = difusa.ones({ 2, 3 })
  H.raises(function() return a + difusa.ones({ 4 }) end, "do not broadcast")
  H.raises(function() return difusa.zeros({ 2, -1 }) end, "shape entry 2")
  H.raises(function() return difusa.randn { 2, rng = "gpu9" } end, "unknown rng")
  H.raises(function() return a:slice(3, 1, 1) end, "dimension out of range")
  H.raises(function() return difusa.from_table({ 1, 2, 3 }, { 2, 2 }) end, "do not fill")
  H.raises(function() return a.shape(42) end, "tensor expected")
  H.raises(function() return difusa.zeros({ 1 }, "tpu") end, "unknown device")
end

function T.freed_tensors_raise()
  local a = difusa.ones({ 2 })
  a:free()
  H.raises(function() return a:shape() end, "freed tensor")
  H.raises(function() return a + 1 end, "freed tensor")
  assert(tostring(a):find("freed"))
  do
    local b <close> = difusa.ones({ 2 })
  end
end

function T.opencl_matches_cpu()
  local devs = difusa.devices()
  if #devs < 2 then return end -- only the CPU here
  local a = difusa.randn { 2, 3, 4, 5, seed = 3 }
  local g = a:to("opencl")
  H.eq(g:device(), "opencl")
  local back = ((g * 2) + 1):to("cpu")
  local want = (a * 2 + 1):table()
  local got = back:table()
  for i = 1, #want do H.near(got[i], want[i], 1e-6, "element " .. i) end
end

return T
