-- difusa.image from Lua, and the module under the stock lua5.4 interpreter.
local difusa = require "difusa"
local H = dofile("tests/lua/helpers.lua")
local T = {}

function T.png_round_trip_with_metadata()
  -- values on the 8-bit grid survive exactly: p/127.5 - 1
  local v = {}
  for i = 1, 3 * 4 * 5 do v[i] = ((i * 37) % 256) / 127.5 - 1 end
  local img = difusa.from_table(v, { 1, 3, 4, 5 })
  local path = os.tmpname() .. ".png"
  local params = difusa.image.parameters { prompt = "a fox, snow", negative = "blurry", steps = 20,
    sampler = "DPM++ 2M", scheduler = "Karras", cfg = 7, seed = 42, width = 5, height = 4 }
  assert(difusa.image.save(img, path, { metadata = { parameters = params, Software = "difusa" } }))
  local back = assert(difusa.image.load(path))
  local a, b = back:table(), img:table()
  for i = 1, #a do H.near(a[i], b[i], 1e-6, "pixel " .. i) end
  H.eq(difusa.image.read_text(path, "parameters"), params)
  H.eq(difusa.image.read_text(path, "Software"), "difusa")
  H.eq(params, "a fox, snow\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, " ..
    "CFG scale: 7, Seed: 42, Size: 5x4, Version: difusa " .. difusa._VERSION:match("[%d.]+$"))
  local ok, err = difusa.image.read_text(path, "nothing")
  H.eq(ok, nil); assert(err and err:find("nothing"), err)
  os.remove(path)
  ok, err = difusa.image.load("/nonexistent.png")
  H.eq(ok, nil); assert(err:find("nonexistent"), err)
end

function T.grid_resize_crop()
  local batch = difusa.randn { 3, 3, 4, 6, seed = 1 }
  local g = difusa.image.grid(batch, 2)
  local s = g:shape()
  H.eq(s[3], 8); H.eq(s[4], 12)
  s = difusa.image.resize(batch, 12, 2):shape()
  H.eq(s[3], 2); H.eq(s[4], 12)
  s = difusa.image.crop(batch, 1, 1, 3, 2):shape()
  H.eq(s[3], 2); H.eq(s[4], 3)
end

function T.stock_interpreter_requires_the_module()
  local f = io.open("build/release/lua/difusa.so")
  if not f then return end -- built by make test; not by a sanitizer-only build
  f:close()
  local p = io.popen("lua5.4 -e \"package.cpath='build/release/lua/?.so;'..package.cpath; " ..
    "local d = require 'difusa'; print(d._VERSION, #d.samplers() > 0, d.randn{2, seed=42}:table()[1])\" 2>&1")
  local out = p:read("a")
  p:close()
  if out:find("not found") and out:find("lua5.4") then return end -- no stock interpreter here
  assert(out:find("^difusa [%d.]+\ttrue\t0%.336"), out)
end

return T
