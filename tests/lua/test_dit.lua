-- A short DiT pipeline run against diffusers' DiTPipeline (tiny random DiT,
-- DDIM, 8 steps, guidance 4 on all channels as DiTPipeline guides, seed 0).
local difusa = require "difusa"
local T = {}
local fx = "tests/fixtures/dit/"

local function psnr(a, b)
  local v = ((a - b) * 127.5):table()
  local mse = 0
  for i = 1, #v do mse = mse + v[i] * v[i] end
  return 10 * math.log(255 * 255 / math.max(mse / #v, 1e-10), 10)
end

local function pipeline(device)
  local dit = assert(difusa.load_dit(fx .. "p2/transformer", { device = device }))
  local vae = assert(difusa.load(fx .. "p2/vae", { device = device })).vae
  local sigmas = difusa.sigmas(dit, 8, "leading", { steps_offset = 0 })
  local x = difusa.randn { 2, 4, 16, 16, seed = 0, device = device } * math.sqrt(sigmas[1] ^ 2 + 1)
  local denoise = dit:denoiser { labels = { 1, 7 }, cfg = 4, guide_channels = 4 }
  local latent = difusa.sampler("ddim")(denoise, x, sigmas)
  local img = vae:decode(latent):to("cpu")
  for i = 1, 2 do
    local want = assert(difusa.image.load(fx .. "pipeline." .. (i - 1) .. ".png"))
    local path = os.tmpname() .. ".png"
    assert(difusa.image.save(img:slice(1, i), path))
    local got = assert(difusa.image.load(path))
    os.remove(path)
    local p = psnr(got, want)
    print(string.format("  DiT pipeline on %s, class %d: PSNR %.1f dB against diffusers", device, i == 1 and 1 or 7, p))
    assert(p >= 40, string.format("PSNR %.2f dB < 40", p))
  end
end

function T.dit_pipeline_matches_diffusers() pipeline("cpu") end

function T.dit_pipeline_matches_diffusers_on_opencl()
  if #difusa.devices() < 2 then return end -- no OpenCL device here
  pipeline("opencl")
end

-- DiT's own DDPM with the learned variance, against the original sampler's
-- formulas run in torch (tools/gen_dit_ddpm_fixture.py).
function T.ddpm_with_learned_variance_matches_the_original_sampler()
  package.path = "scripts/lib/?.lua;" .. package.path
  local ddpm = require "ditddpm"
  local ex = assert(difusa.load_tensors(fx .. "ddpm.expected.safetensors"))
  local dit = assert(difusa.load_dit(fx .. "p4.safetensors", { heads = 2 }))
  local got = ddpm.sample(dit, { 1, 7 }, { steps = 10, cfg = 4, latent = 16, generator = difusa.generator(0) })
  local want = ex.final
  local err = (got - want):table()
  local ref = want:table()
  local worst, scale = 0, 0
  for i = 1, #err do
    worst = math.max(worst, math.abs(err[i]))
    scale = math.max(scale, math.abs(ref[i]))
  end
  print(string.format("  DiT DDPM (learned variance): max rel err %.3g", worst / scale))
  assert(worst / scale <= 1e-4, string.format("max rel err %.3g", worst / scale))
end

return T
