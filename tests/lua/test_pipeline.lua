-- End-to-end: the pipeline scripts on a tiny random-weight SD1 model folder
-- against diffusers' StableDiffusionPipeline / Img2ImgPipeline run with the
-- same seed and settings (tests/fixtures/pipeline, tools/gen_pipeline_fixtures.py).
local difusa = require "difusa"
local T = {}
local host = arg and arg[-1] or "difusa"
local fx = "tests/fixtures/pipeline/"
local common = "--model " .. fx .. "tiny-sd --prompt 'a red circle on a blue background' --negative blurry " ..
    "--steps 8 --cfg 7.5 --seed 42 --width 64 --height 48"

local function psnr(a_path, b_path)
  local a = assert(difusa.image.load(a_path))
  local b = assert(difusa.image.load(b_path))
  local v = ((a - b) * 127.5):table()
  local mse = 0
  for i = 1, #v do mse = mse + v[i] * v[i] end
  mse = mse / #v
  return 10 * math.log(255 * 255 / math.max(mse, 1e-10), 10)
end

local function run(script, args, out)
  local cmd = string.format("%s scripts/%s.lua %s -o %s 2>/dev/null", host, script, args, out)
  local ok = os.execute(cmd)
  assert(ok, "failed: " .. cmd)
end

local function check(script, args, reference, what)
  local out = os.tmpname() .. ".png"
  run(script, args, out)
  local p = psnr(out, fx .. reference)
  print(string.format("  %s: PSNR %.1f dB against diffusers", what, p))
  assert(p >= 40, string.format("%s: PSNR %.2f dB < 40", what, p))
  return out
end

function T.txt2img_euler_matches_diffusers()
  local out = check("txt2img", common .. " --sampler euler --scheduler leading", "txt2img_euler.png", "txt2img Euler")
  local params = assert(difusa.image.read_text(out, "parameters"))
  assert(params:find("^a red circle on a blue background\nNegative prompt: blurry\nSteps: 8, Sampler: Euler"), params)
  -- a folder has no single-file hash: the Model field names it
  assert(params:find("CFG scale: 7.5, Seed: 42, Size: 64x48, Model: tiny%-sd, Version: difusa"), params)
  os.remove(out)
end

function T.txt2img_dpmpp_2m_karras_matches_diffusers()
  os.remove(check("txt2img", common .. " --sampler dpmpp_2m --scheduler karras", "txt2img_dpmpp2m_karras.png",
    "txt2img DPM++ 2M Karras"))
end

function T.img2img_matches_diffusers()
  os.remove(check("img2img", common .. " --init " .. fx .. "init.png --strength 0.6", "img2img_euler.png",
    "img2img Euler, strength 0.6"))
end

function T.inpaint_keeps_the_unmasked_half()
  local mask = os.tmpname() .. ".png"
  local keep = difusa.zeros({ 1, 3, 48, 32 }) - 1
  local paint = difusa.ones({ 1, 3, 48, 32 })
  assert(difusa.image.save(difusa.cat({ keep, paint }, 4), mask))
  local out = os.tmpname() .. ".png"
  run("inpaint", common .. " --init " .. fx .. "init.png --mask " .. mask, out)
  local init = assert(difusa.image.load(fx .. "init.png"))
  local got = assert(difusa.image.load(out))
  -- the kept half stays close to the init image (through the VAE), the painted half changes
  local kept = (got:slice(4, 1, 24) - init:slice(4, 1, 24)):std()
  local painted = (got:slice(4, 41, 64) - init:slice(4, 41, 64)):std()
  print(string.format("  inpaint: kept half differs by %.3f, painted half by %.3f", kept, painted))
  assert(painted > kept, "the painted half should change more than the kept half")
  os.remove(out)
  os.remove(mask)
end

function T.script_help_and_errors()
  local p = io.popen(host .. " scripts/txt2img.lua --help")
  local help = p:read("a")
  p:close()
  assert(help:find("%-%-prompt TEXT") and help:find("%-%-steps N") and help:find("default: 20"), help)
  local ok, _, code = os.execute(host .. " scripts/txt2img.lua --model x 2>/dev/null")
  assert(not ok and code == 2, "a missing --prompt is a usage error")
  ok = os.execute(host .. " scripts/txt2img.lua --model /nonexistent --prompt x 2>/dev/null")
  assert(not ok, "a missing model fails")
end

function T.ctrl_c_stops_at_a_step_boundary()
  local out = os.tmpname()
  local cmd = string.format("sh -c '%s scripts/txt2img.lua --model %stiny-sd --prompt x --steps 100000 --width 64 " ..
    "--height 48 -o %s.png > %s 2>&1 & p=$!; sleep 2; kill -INT $p; wait $p'", host, fx, out, out)
  local ok = os.execute(cmd)
  local f = assert(io.open(out))
  local log = f:read("a")
  f:close()
  os.remove(out)
  assert(not ok, "an interrupted run exits with an error")
  assert(log:find("interrupted at step %d+ of 100000"), log:sub(-300))
end

function T.readme_documents_the_current_flags()
  local ok = os.execute(host .. " scripts/lib/readme.lua --check README.md")
  assert(ok, "README.md's flag tables differ from the scripts' --help: run make readme")
end

return T
