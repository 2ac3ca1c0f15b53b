-- The demo: the project's own tiny default model (models/tiny-shapes, trained
-- by tools/train on procedural shapes) draws a prompt, then a 4-image grid of
-- other prompts.   difusa scripts/demo.lua [model folder] [output folder]
local dir = (arg and arg[0] or ""):match("^(.*)/") or "."
package.path = dir .. "/lib/?.lua;" .. package.path
local difusa = require "difusa"
local pipeline = require "pipeline"

local model_path = select(1, ...) or (dir .. "/../models/tiny-shapes")
local out = select(2, ...) or "build"
local model, err = difusa.load(model_path)
if not model then
  io.stderr:write("demo: " .. err .. "\n")
  os.exit(1)
end

local function generate(prompt, seed)
  local opts = { prompt = prompt, negative = "", clip_skip = 1, cfg = 5, width = 64, height = 64 }
  local h, w = pipeline.latent_size(model, opts)
  local cond, uncond = pipeline.encode(model, opts)
  local sigmas = difusa.sigmas(model, 20, "leading", { steps_offset = 1 })
  local denoise = model.unet:denoiser { cond = cond, uncond = uncond, cfg = opts.cfg }
  local g = difusa.generator(seed)
  local x = difusa.randn { 1, model.latent_channels, h, w, generator = g } * math.sqrt(sigmas[1] ^ 2 + 1)
  return model.vae:decode(difusa.sampler("euler")(denoise, x, sigmas, { generator = g }))
end

local t0 = difusa.clock()
local prompt = "a small red circle at the top on a blue background"
local img = generate(prompt, 1)
local path = out .. "/demo.png"
local params = difusa.image.parameters { prompt = prompt, steps = 20, sampler = "Euler", scheduler = "Leading",
  cfg = 5, seed = 1, width = 64, height = 64, model = "tiny-shapes" }
assert(difusa.image.save(img, path, { metadata = { parameters = params } }))
print(string.format("%s  (%.1f s)", path, difusa.clock() - t0))

local prompts = { "a large yellow star in the center on a purple background",
  "a green square on the left on a white background", "a small blue ring on the right on a yellow background",
  "a yellow star and a green square" }
local images = {}
for i, p in ipairs(prompts) do images[i] = generate(p, i) end
local grid = out .. "/demo-grid.png"
assert(difusa.image.save(difusa.image.grid(difusa.cat(images, 1), 4), grid))
print(grid .. "  (" .. table.concat(prompts, " | ") .. ")")
