-- dit: class-conditional generation with a DiT (Peebles & Xie), decoded by
-- an SD VAE (ft-EMA / ft-MSE). Guidance follows the original DiT sampler: on
-- the first 3 latent channels unless --guide-all.
--   difusa scripts/dit.lua --model DiT-XL-2-256.safetensors --vae sd-vae-ft-ema --class 207,360 -o dogs.png
local dir = (arg and arg[0] or ""):match("^(.*)/") or "."
package.path = dir .. "/lib/?.lua;" .. package.path
local difusa = require "difusa"
local cli = require "cli"
local pipeline = require "pipeline"

local spec = {
  { "model", nil, "DiT checkpoint (original layout .safetensors) or diffusers transformer folder", required = true },
  { "vae", nil, "the SD VAE to decode with (file or folder)", required = true },
  { "class", "", "classes, indices or names, comma-separated (golden retriever,otter); default 207,360, or " ..
    "every class of a model that lists its own" },
  { "steps", 50, "sampling steps" },
  { "cfg", 4.0, "guidance scale (1: none)" },
  { "sampler", "ddim", "sampler name (difusa --list-samplers); ddpm uses the learned variance, as DiT's sampler" },
  { "scheduler", "leading", "sigma schedule (leading, karras, ...)" },
  { "seed", 0, "seed of the starting noise" },
  { "rng", "cpu", "noise generator: cpu, cuda, cpu-scalar" },
  { "size", 0, "image size in pixels (0: the model's own, else 256 as DiT-XL/2-256)" },
  { "guide_all", false, "guide every latent channel, not just the first 3" },
  { "heads", 0, "attention heads when the checkpoint cannot tell (0: DiT's sizes)" },
  { "device", "cpu", "cpu, opencl or opencl:<index or name>" },
  { "output", "dit.png", "output PNG (-o): a grid of the classes" },
}
local opts = cli.parse("dit", "Generates the classes of a class-conditional DiT (ImageNet or its own).", spec, { ... })

-- A file X.safetensors may have an X.json beside it (as models/tiny-shapes/dit/dit.json) that lists the
-- model's classes ("classes": [...]) and gives its picture size ("image_size") and guided channels
-- ("guide_channels"); without one the model is taken for an ImageNet DiT.
local meta = {}
do
  local f = io.open((tostring(opts.model):gsub("%.safetensors$", "")) .. ".json")
  if f then
    local text = f:read("a")
    f:close()
    local list = text:match('"classes"%s*:%s*(%b[])')
    if list then
      meta.classes = {}
      for s in list:gmatch('"(.-)"') do meta.classes[#meta.classes + 1] = s end
    end
    meta.size = tonumber(text:match('"image_size"%s*:%s*(%d+)'))
    meta.guide = tonumber(text:match('"guide_channels"%s*:%s*(%d+)'))
  end
end

-- class names or indices -> indices (data/imagenet/classes.txt: line n+1 is class n)
local names = {}
if meta.classes then
  for i, s in ipairs(meta.classes) do names[s:lower()] = i - 1 end
else
  for _, path in ipairs { dir .. "/../data/imagenet/classes.txt", dir .. "/../share/difusa/data/imagenet/classes.txt" } do
    local f = io.open(path)
    if f then
      local n = 0
      for line in f:lines() do names[line:lower()] = n; n = n + 1 end
      f:close()
      break
    end
  end
end
local labels = {}
local classes = opts.class ~= "" and tostring(opts.class) or not meta.classes and "207,360" or nil
if classes then
  for item in classes:gmatch("[^,]+") do
    item = item:match("^%s*(.-)%s*$")
    local n = tonumber(item) or names[item:lower()]
    if not n then error("--class: unknown class '" .. item .. "'", 0) end
    labels[#labels + 1] = n
  end
else
  for i = 1, #meta.classes do labels[i] = i - 1 end
end

difusa.device(opts.device)
local dit = assert(difusa.load_dit(opts.model, { device = opts.device, heads = opts.heads }))
local vmodel = assert(difusa.load(opts.vae, { device = opts.device }))
local vae = vmodel.vae
local info = dit:info()
for _, l in ipairs(labels) do
  if l >= info.num_classes then error(string.format("--class %d: the model has %d classes", l, info.num_classes), 0) end
end
local size = opts.size > 0 and opts.size or meta.size or 256
local h = size // vmodel.latent_factor
local guide = opts.guide_all and info.in_channels or meta.guide or 3
local g = difusa.generator(opts.seed, opts.rng)
local latent
if opts.sampler == "ddpm" and info.learn_sigma then
  -- the original DiT sampler: DDPM with the variance the model learned
  latent = require("ditddpm").sample(dit, labels, { steps = opts.steps, cfg = opts.cfg, guide_channels = guide,
    latent = h, generator = g, callback = pipeline.progress(opts.steps, "dit ddpm") }):to(opts.device)
else
  local sigmas = difusa.sigmas(dit, opts.steps, opts.scheduler, { steps_offset = 1 })
  local denoise = dit:denoiser { labels = labels, cfg = opts.cfg, guide_channels = guide }
  local x = difusa.randn { #labels, info.in_channels, h, h, generator = g, device = opts.device } *
      math.sqrt(sigmas[1] * sigmas[1] + 1)
  latent = difusa.sampler(opts.sampler)(denoise, x, sigmas, { generator = g,
    callback = pipeline.progress(#sigmas - 1, "dit") })
end
local img = vae:decode(latent)
local cols = #labels > 16 and math.ceil(math.sqrt(#labels)) or math.min(#labels, 4)
if meta.classes and #labels == #meta.classes and #labels % 8 == 0 then cols = 8 end
local ok, err = difusa.image.save(difusa.image.grid(img:to("cpu"), cols), opts.output)
if not ok then error(err, 0) end
io.stderr:write("wrote " .. opts.output .. "\n")
