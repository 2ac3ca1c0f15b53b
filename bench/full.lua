-- One difusa measurement of `make bench-full` (bench/full.sh runs one process per model and size, so that
-- each peak RSS is its own). A whole txt2img at batch 1 with CFG (cond + uncond batched, as SD pipelines
-- run it): load, text encode, `steps` Euler steps, VAE decode; for DiT, class-conditional with CFG.
--
--   lua bench/full.lua sd|dit MODEL SIZE [STEPS] [DEVICE] [VAE]
--
-- Prints one line of key=value pairs: the seconds of each part (encode_s the better of two runs, step_s the
-- mean of the steps after the first, first_step_s apart), the FLOPs of one step, one encode and one decode
-- as the ops counted them (difusa.flops), and the process's peak RSS (VmHWM) at the end.
local dir = (arg and arg[0] or ""):match("^(.*)/") or "."
package.path = dir .. "/../scripts/lib/?.lua;" .. package.path
local difusa = require "difusa"

local kind, model_path, size, steps, device, vae_path = ...
size, steps, device = tonumber(size), tonumber(steps or 3), device or "cpu"
if not (kind == "sd" or kind == "dit") or not model_path or not size or steps < 2 then
  io.stderr:write("usage: lua bench/full.lua sd|dit MODEL SIZE [STEPS >= 2] [DEVICE] [VAE (dit)]\n")
  os.exit(2)
end

local function status(key)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(key .. ":%s*(%d+)")) * 1024
end

local out = {}
local function timed(key, fn)
  difusa.flops(true)
  local t0 = difusa.clock()
  local r1, r2 = fn()
  out[key .. "_s"] = difusa.clock() - t0
  out[key .. "_gflop"] = difusa.flops() / 1e9
  return r1, r2
end

difusa.device(device)
local denoise, latents, sigmas, vae
if kind == "sd" then
  local model = timed("load", function() return assert(difusa.load(model_path, { device = device })) end)
  vae = model.vae
  local prompt = "a photograph of an astronaut riding a horse on the moon, highly detailed"
  local both, pooled = timed("encode", function() return model.clip:encode { prompt, "" } end)
  local t1 = out.encode_s
  timed("encode", function() return model.clip:encode { prompt, "" } end)
  out.encode_s = math.min(t1, out.encode_s)
  local time_ids
  if model.family == "sdxl" then time_ids = difusa.from_table({ size, size, 0, 0, size, size }, { 1, 6 }) end
  denoise = model.unet:denoiser { cond = both:slice(1, 1), uncond = both:slice(1, 2), cfg = 7.5, time_ids = time_ids,
    pooled = pooled and pooled:slice(1, 1), uncond_pooled = pooled and pooled:slice(1, 2) }
  latents = { 1, model.latent_channels, size // model.latent_factor, size // model.latent_factor }
  sigmas = difusa.sigmas(model, steps, "leading", { steps_offset = 1 })
else
  local dit = timed("load", function() return assert(difusa.load_dit(model_path, { device = device })) end)
  vae = assert(difusa.load(vae_path, { device = device })).vae
  local info = dit:info()
  denoise = dit:denoiser { labels = { 207 }, cfg = 4.0, guide_channels = 3 }
  latents = { 1, info.in_channels, size // 8, size // 8 }
  sigmas = difusa.sigmas(dit, steps, "leading", { steps_offset = 1 })
  out.encode_s, out.encode_gflop = 0, 0
end

local g = difusa.generator(1, "cpu")
local x = difusa.randn { latents[1], latents[2], latents[3], latents[4], generator = g, device = device } *
    math.sqrt(sigmas[1] * sigmas[1] + 1)
local marks = {}
difusa.flops(true)
local t0 = difusa.clock()
local latent = difusa.sampler("euler")(denoise, x, sigmas, { callback = function(st)
  if device ~= "cpu" then st.x:to("cpu") end -- waits for the device's queue: the step's own time
  marks[st.i] = { difusa.clock(), difusa.flops(true) }
  local since = st.i > 1 and marks[st.i - 1][1] or t0
  io.stderr:write(string.format("step %d/%d %.2f s\n", st.i, steps, marks[st.i][1] - since))
end })
out.first_step_s = marks[1][1] - t0
out.step_s = (marks[steps][1] - marks[1][1]) / (steps - 1)
out.step_gflop = marks[2][2] / 1e9
timed("decode", function() return vae:decode(latent):to("cpu") end)
out.peak_rss_mb = status("VmHWM") / 2 ^ 20

local keys = {}
for k in pairs(out) do keys[#keys + 1] = k end
table.sort(keys)
local line = { "difusa" }
for _, k in ipairs(keys) do line[#line + 1] = string.format("%s=%.6g", k, out[k]) end
print(table.concat(line, " "))
