-- sde: score-based generation (Song et al. 2021) with the predictor-corrector
-- and probability-flow ODE samplers, for Stable Diffusion models (a VP model
-- seen in VE sigma space) and for DiT (--class with --vae).
--   difusa scripts/sde.lua --model sd15.safetensors --prompt "a cat" --sde ve --predictor reverse_diffusion \
--       --corrector langevin --snr 0.16 --corrector-steps 1 --steps 200
--   difusa scripts/sde.lua --model DiT-XL-2-256.safetensors --vae sd-vae-ft-ema --class 207 --ode
local dir = (arg and arg[0] or ""):match("^(.*)/") or "."
package.path = dir .. "/lib/?.lua;" .. package.path
local difusa = require "difusa"
local cli = require "cli"
local pipeline = require "pipeline"

local spec = {
  { "model", nil, "SD checkpoint / diffusers folder, or a DiT (with --class and --vae)", required = true },
  { "prompt", "", "SD: what to draw" },
  { "negative", "", "SD: negative prompt" },
  { "class", nil, "DiT: ImageNet class index" },
  { "vae", nil, "DiT: the VAE to decode with; SD: a replacement VAE" },
  { "sde", "ve", "the SDE: ve, vp or subvp" },
  { "ode", false, "use the probability-flow ODE (adaptive RK45) instead of predictor-corrector" },
  { "predictor", "reverse_diffusion", "predictor: reverse_diffusion, euler_maruyama, ancestral, none" },
  { "corrector", "langevin", "corrector: langevin, ald (annealed Langevin), none" },
  { "snr", 0.16, "corrector signal-to-noise ratio" },
  { "corrector_steps", 1, "corrector steps per noise level" },
  { "steps", 200, "noise levels (predictor steps)" },
  { "cfg", 7.5, "guidance scale (SD; DiT: 4 is usual)" },
  { "seed", 42, "seed" },
  { "width", 512, "SD: width in pixels (DiT: --width is the image size)" },
  { "height", 512, "SD: height in pixels" },
  { "device", "cpu", "cpu, opencl or opencl:<index or name>" },
  { "output", "sde.png", "output PNG (-o)" },
}
local opts = cli.parse("sde", "Score-based generation with PC and probability-flow samplers.", spec, { ... })
difusa.device(opts.device)

local denoise, shape, decode, model
if opts.class then
  local dit = assert(difusa.load_dit(opts.model, { device = opts.device }))
  if not opts.vae then error("--class needs --vae", 0) end
  local vae = assert(difusa.load(opts.vae, { device = opts.device })).vae
  local info = dit:info()
  denoise = dit:denoiser { labels = { tonumber(opts.class) }, cfg = opts.cfg }
  shape = { 1, info.in_channels, opts.width // 8, opts.width // 8 }
  decode = function(latent) return vae:decode(latent) end
  model = dit
else
  local m = pipeline.load { model = opts.model, vae = opts.vae, device = opts.device }
  local h, w = pipeline.latent_size(m, opts)
  local cond, uncond, pooled, upooled = pipeline.encode(m, { prompt = opts.prompt, negative = opts.negative, clip_skip = 1 })
  denoise = pipeline.denoiser(m, opts, cond, uncond, pooled, upooled)
  shape = { 1, m.latent_channels, h, w }
  decode = function(latent) return m.vae:decode(latent) end
  model = m
end

-- score_sde's grid: geometric from the model's largest sigma down to its smallest
local sigmas = difusa.sigmas(model, opts.steps, "exponential")
local options = { sde = opts.sde }
local name = "score_ode"
if not opts.ode then
  name = "score_pc"
  options.predictor, options.corrector = opts.predictor, opts.corrector
  options.snr, options.n_steps = opts.snr, opts.corrector_steps
end
local g = difusa.generator(opts.seed, "cpu")
local x = difusa.randn { shape[1], shape[2], shape[3], shape[4], generator = g, device = opts.device } * sigmas[1]
local latent = difusa.sampler(name, options)(denoise, x, sigmas, { generator = g,
  callback = pipeline.progress(#sigmas - 1, name) })
local ok, err = difusa.image.save(decode(latent):to("cpu"), opts.output)
if not ok then error(err, 0) end
io.stderr:write("wrote " .. opts.output .. "\n")
