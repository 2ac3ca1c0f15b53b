-- img2img: an image and a prompt to a new image. The init image is encoded,
-- noised to the point `strength` of the schedule, and sampled from there
-- (diffusers' StableDiffusionImg2ImgPipeline: of a schedule of --steps, the
-- last floor(steps·strength) run).
--   difusa scripts/img2img.lua --model sd15.safetensors --init photo.png --strength 0.6 --prompt "oil painting"
local dir = (arg and arg[0] or ""):match("^(.*)/") or "."
package.path = dir .. "/lib/?.lua;" .. package.path
local difusa = require "difusa"
local cli = require "cli"
local pipeline = require "pipeline"

local spec = pipeline.options {
  { "init", nil, "the starting image (PNG, JPEG, ...)", required = true },
  { "strength", 0.6, "how much to change it: 0 keeps it, 1 ignores it" },
}
local opts = cli.parse("img2img", "Generates images from an image and a prompt.", spec, { ... })

local model = pipeline.load(opts)
local init = assert(difusa.image.load(opts.init))
local s = init:shape()
if s[3] ~= opts.height or s[4] ~= opts.width then init = difusa.image.resize(init, opts.width, opts.height) end
pipeline.latent_size(model, opts)
local cond, uncond, pooled, upooled = pipeline.encode(model, opts)
local all = pipeline.sigmas(model, opts)
local run = math.floor(opts.steps * opts.strength)
if run < 1 then error("--strength " .. opts.strength .. " leaves no step to run", 0) end
local sigmas = {}
for k = #all - run, #all do sigmas[#sigmas + 1] = all[k] end
local denoise = pipeline.denoiser(model, opts, cond, uncond, pooled, upooled)
local sampler = difusa.sampler(opts.sampler)

for i = 1, opts.batch do
  local seed = opts.seed + i - 1
  local g = difusa.generator(seed, opts.rng)
  local latent0 = model.vae:encode(init:to(opts.device), { generator = g }) -- draws the posterior sample first
  local shape = latent0:shape()
  local noise = difusa.randn { shape[1], shape[2], shape[3], shape[4], generator = g, device = opts.device }
  local x = latent0 + noise * sigmas[1]
  local latent = sampler(denoise, x, sigmas, { generator = g,
    callback = pipeline.callback(opts, #sigmas - 1, "img2img", model.latent_factor) })
  pipeline.save(model, opts, latent, i, seed, { strength = opts.strength })
end
