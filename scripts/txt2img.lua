-- txt2img: a prompt to an image.
--   difusa scripts/txt2img.lua --model sd15.safetensors --prompt "a cat" --steps 20 -o cat.png
local dir = (arg and arg[0] or ""):match("^(.*)/") or "."
package.path = dir .. "/lib/?.lua;" .. package.path
local difusa = require "difusa"
local cli = require "cli"
local pipeline = require "pipeline"

local spec = pipeline.options()
local opts = cli.parse("txt2img", "Generates images from a prompt.", spec, { ... })

local model = pipeline.load(opts)
local h, w = pipeline.latent_size(model, opts)
local cond, uncond, pooled, upooled = pipeline.encode(model, opts)
local sigmas = pipeline.sigmas(model, opts)
local denoise = pipeline.denoiser(model, opts, cond, uncond, pooled, upooled)
local sampler = difusa.sampler(opts.sampler)

for i = 1, opts.batch do
  local seed = opts.seed + i - 1
  local g = difusa.generator(seed, opts.rng)
  local noise = difusa.randn { 1, model.latent_channels, h, w, generator = g, device = opts.device }
  -- diffusers' start: noise · √(σ_max² + 1)
  local x = noise * math.sqrt(sigmas[1] * sigmas[1] + 1)
  local label = opts.batch > 1 and string.format("image %d/%d", i, opts.batch) or "sampling"
  local latent = sampler(denoise, x, sigmas, { generator = g,
    callback = pipeline.callback(opts, #sigmas - 1, label, model.latent_factor) })
  pipeline.save(model, opts, latent, i, seed)
end
