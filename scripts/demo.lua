-- The demo grid: the project's own tiny default model (models/tiny-shapes, trained by tools/train on
-- procedural shapes) draws a few prompts, one row each, one column per seed.
--   difusa scripts/demo.lua [model folder] [output PNG] [seeds per prompt] [prompt set: short | readme]
local dir = (arg and arg[0] or ""):match("^(.*)/") or "."
package.path = dir .. "/lib/?.lua;" .. package.path
local difusa = require "difusa"
local pipeline = require "pipeline"

local model_path = select(1, ...) or (dir .. "/../models/tiny-shapes")
local out = select(2, ...) or "demo-grid.png"
local seeds = tonumber(select(3, ...) or 1)
local set = select(4, ...) or "short"

local PROMPTS = {
  short = { "a large yellow star in the center on a purple background",
    "a green square on the left on a white background", "a small blue ring on the right on a yellow background",
    "a yellow star and a green square" },
  readme = { "a small red circle at the top on a blue background",
    "a large yellow star in the center on a purple background",
    "a large green square on the left on a white background",
    "a small blue ring on the right on a yellow background",
    "a large black cross in the center on an orange background",
    "a large white triangle at the bottom on a black background",
    "a yellow star and a green square",
    "a red circle on the left and a blue triangle on the right on a white background" },
}
local prompts = PROMPTS[set]
if not prompts then error("demo: unknown prompt set '" .. set .. "' (short, readme)", 0) end

local model, err = difusa.load(model_path)
if not model then error("demo: " .. err, 0) end

-- As scripts/txt2img.lua with --cfg 3 (the model card's advice), Euler, 20 steps, the model's own size.
local function generate(prompt, seed)
  local opts = { prompt = prompt, negative = "", clip_skip = 1, cfg = 3, width = model.size, height = model.size }
  local h, w = pipeline.latent_size(model, opts)
  local cond, uncond = pipeline.encode(model, opts)
  local sigmas = pipeline.sigmas(model, opts, 20)
  local denoise = pipeline.denoiser(model, opts, cond, uncond)
  local g = difusa.generator(seed)
  local x = difusa.randn { 1, model.latent_channels, h, w, generator = g } * math.sqrt(sigmas[1] ^ 2 + 1)
  return model.vae:decode(difusa.sampler("euler")(denoise, x, sigmas, { generator = g }))
end

local t0 = difusa.clock()
local images = {}
for _, p in ipairs(prompts) do
  for s = 1, seeds do images[#images + 1] = generate(p, s) end
end
local ok, e = difusa.image.save(difusa.image.grid(difusa.cat(images, 1), seeds > 1 and seeds or #prompts), out)
if not ok then error("demo: " .. e, 0) end
print(string.format("%s  (%d pictures in %.1f s)", out, #images, difusa.clock() - t0))
for i, p in ipairs(prompts) do print(string.format("  %s %d: %s", seeds > 1 and "row" or "picture", i, p)) end
