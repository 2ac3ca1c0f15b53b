-- inpaint: repaint the white part of a mask. With an inpainting UNet
-- (9 input channels) the mask and the masked image's latents go in as extra
-- channels (diffusers' StableDiffusionInpaintPipeline); with an ordinary model
-- the unmasked latents are put back after every step (masked latent blending).
--   difusa scripts/inpaint.lua --model sd15-inpainting.safetensors --init photo.png --mask mask.png --prompt "a red hat"
local dir = (arg and arg[0] or ""):match("^(.*)/") or "."
package.path = dir .. "/lib/?.lua;" .. package.path
local difusa = require "difusa"
local cli = require "cli"
local pipeline = require "pipeline"

local spec = pipeline.options {
  { "init", nil, "the image to repaint", required = true },
  { "mask", nil, "mask image: white is repainted, black kept", required = true },
  { "strength", 1.0, "how far to noise the repainted part (1: from scratch)" },
}
local opts = cli.parse("inpaint", "Repaints the masked part of an image from a prompt.", spec, { ... })

local model = pipeline.load(opts)
local h, w = pipeline.latent_size(model, opts)
local function fit(img)
  local s = img:shape()
  if s[3] ~= opts.height or s[4] ~= opts.width then img = difusa.image.resize(img, opts.width, opts.height) end
  return img
end
local init = fit(assert(difusa.image.load(opts.init)))
local mask = fit(assert(difusa.image.load_mask(opts.mask)))
local keep = (mask * -1 + 1):clamp(0, 1)               -- 1 where the image is kept
local latent_mask = difusa.image.resize(mask, w, h):clamp(0, 1):to(opts.device)

local cond, uncond, pooled, upooled = pipeline.encode(model, opts)
local all = pipeline.sigmas(model, opts)
local run = math.max(1, math.floor(opts.steps * opts.strength))
local sigmas = {}
for k = #all - run, #all do sigmas[#sigmas + 1] = all[k] end
local sampler = difusa.sampler(opts.sampler)
local inpainting_unet = model.unet_channels == 9

for i = 1, opts.batch do
  local seed = opts.seed + i - 1
  local g = difusa.generator(seed, opts.rng)
  local init_latent = model.vae:encode(init:to(opts.device), { generator = g })
  local shape = init_latent:shape()
  local noise = difusa.randn { shape[1], shape[2], shape[3], shape[4], generator = g, device = opts.device }
  local denoise, extra
  local x
  if inpainting_unet then
    -- extra channels: the mask, then the latents of the image with the mask blacked out
    local masked = model.vae:encode((init * keep):to(opts.device), { generator = g })
    local concat = difusa.cat({ latent_mask, masked }, 2)
    denoise = pipeline.denoiser(model, opts, cond, uncond, pooled, upooled, concat)
    x = opts.strength >= 1 and noise * math.sqrt(sigmas[1] * sigmas[1] + 1) or init_latent + noise * sigmas[1]
    extra = {}
  else
    denoise = pipeline.denoiser(model, opts, cond, uncond, pooled, upooled)
    x = init_latent + noise * sigmas[1]
    local m4 = difusa.cat({ latent_mask, latent_mask, latent_mask, latent_mask }, 2) -- per latent channel
    extra = { mask = m4, init = init_latent, noise = noise }
  end
  extra.generator = g
  extra.callback = pipeline.callback(opts, #sigmas - 1, "inpaint", model.latent_factor)
  local latent = sampler(denoise, x, sigmas, extra)
  pipeline.save(model, opts, latent, i, seed, { strength = opts.strength })
end
