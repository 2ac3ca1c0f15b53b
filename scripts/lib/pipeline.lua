-- What the pipeline scripts share: loading, prompts with classifier-free
-- guidance, sigma schedules, the progress display, latent previews, sampling
-- and saving with A1111 metadata. Each script stays a short, readable
-- sequence of these steps; copy one and change it freely.
local difusa = require "difusa"
local M = {}

-- The options every pipeline takes (each script adds its own).
M.common_options = {
  { "model", nil, "checkpoint (.safetensors) or diffusers folder", required = true },
  { "prompt", nil, "what to draw (AUTOMATIC1111 syntax: (word:1.2), [word], BREAK)", required = true },
  { "negative", "", "negative prompt" },
  { "steps", 20, "sampling steps" },
  { "cfg", 7.5, "classifier-free guidance scale" },
  { "sampler", "euler", "sampler name (difusa --list-samplers)" },
  { "scheduler", "leading", "sigma schedule: leading (diffusers' default), karras, exponential, normal, simple, ..." },
  { "seed", 42, "seed of the starting noise" },
  { "rng", "cpu", "noise generator: cpu (torch CPU), cuda (torch CUDA / A1111 NV), cpu-scalar" },
  { "width", 0, "image width in pixels (0: the model's own size, 512 for SD1)" },
  { "height", 0, "image height in pixels (0: the model's own size)" },
  { "batch", 1, "images to make (seeds seed, seed+1, ...)" },
  { "clip_skip", 1, "skip the last N-1 text-encoder layers (A1111's Clip skip)" },
  { "vae", nil, "a VAE file or folder replacing the model's" },
  { "prediction", nil, "epsilon or v_prediction when the checkpoint does not say" },
  { "device", "cpu", "cpu, opencl or opencl:<index or name>" },
  { "preview_every", 0, "write a latent preview PNG every N steps (0: off)" },
  { "tiled", false, "decode with the VAE in tiles (large images)" },
  { "output", "out.png", "output PNG (-o); a batch writes name-1.png, name-2.png, ..." },
}

function M.options(extra)
  local spec = {}
  for _, o in ipairs(M.common_options) do spec[#spec + 1] = o end
  for _, o in ipairs(extra or {}) do spec[#spec + 1] = o end
  return spec
end

function M.load(opts)
  difusa.device(opts.device)
  local model, err = difusa.load(opts.model, { vae = opts.vae, prediction = opts.prediction, device = opts.device })
  if not model then error(err, 0) end
  if not (model.clip and model.unet and model.vae) then
    error(opts.model .. ": needs a text encoder, a UNet and a VAE", 0)
  end
  if opts.width == 0 then opts.width = model.size end
  if opts.height == 0 then opts.height = model.size end
  io.stderr:write(string.format("%s: %s model, %s prediction, on %s\n", opts.model, model.family, model.prediction,
    model.device))
  return model
end

-- cond and uncond of equal length (A1111 pads the shorter one with empty chunks),
-- plus SDXL's pooled embeddings.
function M.encode(model, opts)
  local cond, uncond, pooled, upooled
  local both, pooled_both = model.clip:encode({ opts.prompt, opts.negative or "" }, { clip_skip = opts.clip_skip })
  cond, uncond = both:slice(1, 1), both:slice(1, 2)
  if pooled_both then pooled, upooled = pooled_both:slice(1, 1), pooled_both:slice(1, 2) end
  return cond, uncond, pooled, upooled
end

-- The sigmas of the run: diffusers' timestep spacings ("leading" with
-- steps_offset 1, "trailing", "linspace") or k-diffusion / ComfyUI schedules.
function M.sigmas(model, opts, steps)
  return difusa.sigmas(model, steps or opts.steps, opts.scheduler, { steps_offset = 1 })
end

-- The denoiser: the UNet with CFG batched as cond + uncond.
function M.denoiser(model, opts, cond, uncond, pooled, upooled, concat)
  local time_ids
  if model.family == "sdxl" then
    time_ids = difusa.from_table({ opts.height, opts.width, 0, 0, opts.height, opts.width }, { 1, 6 })
  end
  return model.unet:denoiser { cond = cond, uncond = uncond, cfg = opts.cfg, pooled = pooled, uncond_pooled = upooled,
    time_ids = time_ids, concat = concat }
end

-- A progress bar with steps/s and ETA on a terminal, plain lines otherwise.
function M.progress(total, label)
  local tty = difusa.isatty(2)
  local t0 = difusa.clock()
  return function(st)
    local elapsed = math.max(difusa.clock() - t0, 1e-9)
    local rate = st.i / elapsed
    local eta = (total - st.i) / math.max(rate, 1e-9)
    if tty then
      local width = 30
      local shown = math.min(st.i, total)
      local done = math.floor(width * shown / total)
      io.stderr:write(string.format("\r%s [%s%s] %d/%d  %.2f steps/s  ETA %ds ", label, string.rep("#", done),
        string.rep(".", width - done), shown, total, rate, math.floor(eta + 0.5)))
      if st.i == total then io.stderr:write("\n") end
    else
      io.stderr:write(string.format("%s step %d/%d, sigma %.4f, %.2f steps/s\n", label, st.i, total, st.sigma, rate))
    end
  end
end

-- SD's latent-to-RGB approximation (a 4x3 linear map), for previews.
local rgb_factors = {
  { 0.298, 0.207, 0.208 }, { 0.187, 0.286, 0.173 }, { -0.158, 0.189, 0.264 }, { -0.184, -0.271, -0.473 },
}

function M.preview(latent, path, factor)
  local rgb = {}
  for k = 1, 3 do
    local acc
    for c = 1, 4 do
      local term = latent:slice(2, c) * rgb_factors[c][k]
      acc = acc and (acc + term) or term
    end
    rgb[k] = acc
  end
  local img = difusa.cat(rgb, 2):clamp(-1, 1)
  local s = img:shape()
  img = difusa.image.resize(img:to("cpu"), s[4] * factor, s[3] * factor)
  difusa.image.save(img, path)
end

-- The sample callback: progress, and a preview every N steps.
function M.callback(opts, total, label, factor)
  local bar = M.progress(total, label)
  return function(st)
    bar(st)
    if opts.preview_every > 0 and st.denoised and st.i % opts.preview_every == 0 then
      M.preview(st.denoised, (opts.output:gsub("%.png$", "")) .. "-preview.png", factor)
    end
  end
end

local sampler_names = {
  euler = "Euler", euler_ancestral = "Euler a", heun = "Heun", dpm_2 = "DPM2", dpm_2_ancestral = "DPM2 a",
  lms = "LMS", dpm_fast = "DPM fast", dpm_adaptive = "DPM adaptive", dpmpp_2s_ancestral = "DPM++ 2S a",
  dpmpp_sde = "DPM++ SDE", dpmpp_2m = "DPM++ 2M", dpmpp_2m_sde = "DPM++ 2M SDE", dpmpp_3m_sde = "DPM++ 3M SDE",
  ddim = "DDIM", unipc = "UniPC", lcm = "LCM",
}

function M.output_path(opts, i)
  if opts.batch <= 1 then return opts.output end
  return (opts.output:gsub("%.png$", "")) .. "-" .. i .. ".png"
end

-- Decodes, saves with A1111's "parameters" text, returns the path.
function M.save(model, opts, latent, i, seed, extra)
  local img = model.vae:decode(latent, { tiled = opts.tiled })
  local hash = difusa.image.model_hash(opts.model)
  local params = difusa.image.parameters {
    prompt = opts.prompt, negative = opts.negative, steps = opts.steps,
    sampler = sampler_names[opts.sampler] or opts.sampler,
    scheduler = opts.scheduler:sub(1, 1):upper() .. opts.scheduler:sub(2),
    cfg = opts.cfg, seed = seed, width = opts.width, height = opts.height,
    model_hash = hash, model = opts.model:match("([^/]+)/*$"):gsub("%.safetensors$", ""),
    clip_skip = opts.clip_skip, strength = extra and extra.strength,
  }
  local path = M.output_path(opts, i)
  local ok, err = difusa.image.save(img, path, { metadata = { parameters = params } })
  if not ok then error(err, 0) end
  io.stderr:write("wrote " .. path .. "\n")
  return path, img
end

-- Checks the size against the model's latent grid.
function M.latent_size(model, opts)
  local f = model.latent_factor
  if opts.width % f ~= 0 or opts.height % f ~= 0 or opts.width <= 0 or opts.height <= 0 then
    error(string.format("--width %s and --height %s must be positive multiples of %d", opts.width, opts.height, f), 0)
  end
  return opts.height // f, opts.width // f
end

return M
