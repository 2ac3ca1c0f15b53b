-- The bad-input matrix: each case feeds difusa something broken (a file, a size, a name, a number, a plugin,
-- a callback) and asserts the specific message it gets back: never a crash, never a generic failure.
package.path = "tests/lua/?.lua;scripts/lib/?.lua;" .. package.path
local difusa = require "difusa"
local T = {}
local TINY = "tests/fixtures/pipeline/tiny-sd"
local UNET_FILE = "/unet/diffusion_pytorch_model.safetensors"
local host = arg and arg[-1] or "difusa"
local build = host:match("^(.*)/[^/]*$") or "build/release"

-- Runs f, which must fail by returning nil, message or by raising; the message must match every pattern
-- (plain text).
local function fails(f, ...)
  local ok, a, b = pcall(f)
  local msg
  if not ok then
    msg = tostring(a)
  elseif a == nil or a == false then
    msg = tostring(b)
  else
    error("expected a failure, got " .. tostring(a), 2)
  end
  for _, want in ipairs { ... } do
    if not msg:find(want, 1, true) then error(string.format("message '%s' lacks '%s'", msg, want), 2) end
  end
  return msg
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end

local function rmdir(d) os.execute("rm -rf '" .. d .. "'") end

-- Rewrites a safetensors file in place as edit(header, data) -> header, data.
local function edit_safetensors(path, edit)
  local s = read(path)
  local n = string.unpack("<I8", s)
  local header, data = edit(s:sub(9, 8 + n), s:sub(9 + n))
  write(path, string.pack("<I8", #header) .. header .. data)
end

-- A copy of the folder `src` whose file `file` is edited as above.
local function copy_with(src, file, edit)
  local d = tmpdir()
  assert(os.execute(string.format("cp -r '%s/.' '%s/'", src, d)))
  edit_safetensors(d .. file, edit)
  return d
end

-- A copy of the tiny SD folder whose UNet file is edited.
local function tiny_with_unet(edit) return copy_with(TINY, UNET_FILE, edit) end

-- load_dit on an edited copy of a DiT fixture folder, the copy removed afterwards.
local function dit_edited(folder, file, edit, opts)
  local d = copy_with("tests/fixtures/dit/" .. folder, file, edit)
  local r, e = difusa.load_dit(d .. file, opts)
  rmdir(d)
  return r, e
end

-- The byte range [a, b) of a tensor's data in a safetensors header.
local function offsets(header, name)
  local obj = header:match('"' .. name:gsub("%.", "%%.") .. '":(%b{})')
  local a, b = obj:match('"data_offsets":%[(%d+),(%d+)%]')
  return tonumber(a), tonumber(b)
end

local function with_model(path, f)
  local m, err = difusa.load(path)
  rmdir(path)
  if not m then return nil, err end
  return f(m)
end

-- One Euler step of txt2img at 32 x 32 on a model.
local function one_step(m)
  local cond = m.clip:encode({ "a red circle", "" })
  local den = m.unet:denoiser { cond = cond:slice(1, 1), uncond = cond:slice(1, 2), cfg = 5 }
  local sigmas = difusa.sigmas(m, 2, "leading", { steps_offset = 1 })
  local x = difusa.randn { 1, 4, 4, 4, seed = 1 } * sigmas[1]
  return difusa.sampler("euler")(den, x, sigmas)
end

local tiny
local function model()
  tiny = tiny or assert(difusa.load(TINY))
  return tiny
end

local CASES = {
  -- checkpoints and files
  { "missing checkpoint", function() return difusa.load("/nonexistent/model.safetensors") end,
    "/nonexistent/model.safetensors", "no such file" },
  { "garbage file", function()
    local p = os.tmpname() .. ".safetensors"
    write(p, string.rep("\x8f\x01garbage", 100))
    local r, e = difusa.load(p)
    os.remove(p)
    return r, e
  end, ".safetensors: header too large" },
  { "truncated checkpoint", function()
    local d = TINY .. UNET_FILE
    local p = os.tmpname() .. ".safetensors"
    local s = read(d)
    write(p, s:sub(1, #s // 2))
    local r, e = difusa.load_tensors(p)
    os.remove(p)
    return r, e
  end, ".safetensors", "past the end" },
  { "header longer than the file", function()
    local p = os.tmpname() .. ".safetensors"
    write(p, string.pack("<I8", 1 << 40) .. "{}")
    local r, e = difusa.load_tensors(p)
    os.remove(p)
    return r, e
  end, ".safetensors: header too large (1099511627776 bytes" },
  { "header that is not JSON", function()
    local p = os.tmpname() .. ".safetensors"
    write(p, string.pack("<I8", 12) .. "{not json}  ")
    local r, e = difusa.load_tensors(p)
    os.remove(p)
    return r, e
  end, ".safetensors: header: invalid JSON at byte 1" },
  { "folder without a UNet", function()
    local d = tmpdir()
    assert(os.execute(string.format("cp -r '%s/.' '%s/' && rm -rf '%s/unet'", TINY, d, d)))
    local ok, err = pcall(require("pipeline").load, { model = d, device = "cpu" })
    rmdir(d)
    return ok, err
  end, "needs a text encoder, a UNet and a VAE" },
  { "missing tensor", function()
    return with_model(tiny_with_unet(function(h, data)
      return h:gsub('"mid_block%.resnets%.0%.conv1%.weight"', '"mid_block.resnets.0.conv1.weigh_"'), data
    end), one_step)
  end, "tensor 'mid_block.resnets.0.conv1.weight' missing" },
  { "wrong dtype", function()
    return with_model(tiny_with_unet(function(h, data)
      return h:gsub('("conv_in%.weight":{"dtype":")F16', "%1I16"), data
    end), one_step)
  end, "tensor 'conv_in.weight' is I16, not a float type" },
  { "wrong shape", function()
    return with_model(tiny_with_unet(function(h, data)
      return h:gsub('("conv_in%.weight":{"dtype":"F16","shape":)%[16,4,3,3%]', "%1[16,4,1,9]"), data
    end), one_step)
  end, "tensor 'conv_in.weight' has shape (16, 4, 1, 9), expected (16, 4, 3, 3)" },
  { "wrong shape inside a resnet", function()
    return with_model(tiny_with_unet(function(h, data)
      return h:gsub('("mid_block%.resnets%.0%.norm2%.weight":{"dtype":"F16","shape":)%[32%]', "%1[2,16]"), data
    end), one_step)
  end, "tensor 'mid_block.resnets.0.norm2.weight' has shape (2, 16), expected (32)" },
  { "transposed feed-forward weight", function()
    return with_model(tiny_with_unet(function(h, data)
      return h:gsub('("mid_block%.attentions%.0%.transformer_blocks%.0%.ff%.net%.2%.weight":{"dtype":"F16","shape":)' ..
        '%[32,128%]', "%1[128,32]"), data
    end), one_step)
  end, "tensor 'mid_block.attentions.0.transformer_blocks.0.ff.net.2.weight' has shape (128, 32), expected (32, 128)" },
  { "DiT with a transposed MLP weight", function()
    return dit_edited(".", "/p4.safetensors", function(h, data)
      return h:gsub('("blocks%.1%.mlp%.fc2%.weight":{"dtype":"F16","shape":)%[48,192%]', "%1[192,48]"), data
    end, { heads = 2 })
  end, "p4.safetensors: tensor 'blocks.1.mlp.fc2.weight' has shape (192, 48), expected (48, 192)" },
  { "diffusers DiT with a wrong modulation width", function()
    return dit_edited("p2", "/transformer/diffusion_pytorch_model.safetensors", function(h, data)
      return h:gsub('("transformer_blocks%.1%.norm1%.linear%.weight":{"dtype":"F16","shape":)%[192,32%]', "%1[96,64]"),
        data
    end)
  end, "tensor 'transformer_blocks.1.norm1.linear.weight' has shape (96, 64), expected (192, 32)" },
  { "NaN weights", function()
    return with_model(tiny_with_unet(function(h, data)
      local a, b = offsets(h, "conv_in.weight")
      return h, data:sub(1, a) .. string.rep("\x00\x7e", (b - a) // 2) .. data:sub(b + 1)
    end), one_step)
  end, "not finite" },
  { "Inf weights", function()
    return with_model(tiny_with_unet(function(h, data)
      local a, b = offsets(h, "conv_out.weight")
      return h, data:sub(1, a) .. string.rep("\x00\x7c", (b - a) // 2) .. data:sub(b + 1)
    end), one_step)
  end, "not finite" },
  { "SD checkpoint given as a DiT", function() return difusa.load_dit(TINY .. "/unet") end, "no DiT here" },
  { "corrupt PNG", function()
    local p = os.tmpname() .. ".png"
    write(p, "\x89PNG\r\n\x1a\n" .. string.rep("\0", 40))
    local r, e = difusa.image.load(p)
    os.remove(p)
    return r, e
  end, ".png: bad chunk type" },
  { "missing image", function() return difusa.image.load("/nonexistent/init.png") end,
    "/nonexistent/init.png: cannot open" },
  -- sizes
  { "0 x 0 latent", function()
    local m = model()
    local cond = m.clip:encode({ "x", "" })
    local den = m.unet:denoiser { cond = cond:slice(1, 1), uncond = cond:slice(1, 2), cfg = 5 }
    return den(difusa.zeros { 1, 4, 0, 0 }, 1.0)
  end, "larger than padded input (2, 4, 0, 0)" },
  { "huge image", function()
    return difusa.randn { 1, 4, 1 << 20, 1 << 20, seed = 1 }
  end, "out of memory allocating 17592186044480 bytes" },
  { "size not a multiple of 8", function()
    local m = model()
    local w = 8 * m.latent_factor + 1
    return require("pipeline").latent_size(m, { width = w, height = 64 })
  end, "must be positive multiples of" },
  { "negative size", function()
    return require("pipeline").latent_size(model(), { width = -64, height = 64 })
  end, "--width -64" },
  { "latent with the wrong channel count", function()
    local m = model()
    local cond = m.clip:encode({ "x", "" })
    local den = m.unet:denoiser { cond = cond:slice(1, 1), uncond = cond:slice(1, 2), cfg = 5 }
    return den(difusa.zeros { 1, 3, 8, 8 }, 1.0)
  end, "x must be (B, 4, H, W) F32, got (2, 3, 8, 8)" },
  -- names and numbers
  { "unknown sampler", function() return difusa.sampler("eulerr") end, "unknown sampler 'eulerr' (known: " },
  { "unknown schedule", function() return difusa.sigmas(model(), 20, "karass") end, "unknown schedule 'karass'" },
  { "negative steps", function() return difusa.sigmas(model(), -3, "karras") end,
    "steps -3 must be in [1, 100000]" },
  { "zero steps", function() return difusa.sigmas(model(), 0, "leading") end,
    "steps 0 must be in [1, 100000]" },
  { "unknown sampler option", function()
    return difusa.sampler("euler_ancestral", { etaa = 1 })(function(v) return v * 0.5 end, difusa.zeros { 1, 4, 4, 4 },
      { 2, 1, 0 })
  end, "has no option 'etaa' (its options: eta, s_noise)" },
  { "sampler option out of range", function()
    return difusa.sampler("euler_ancestral", { eta = -5 })(function(v) return v * 0.5 end, difusa.zeros { 1, 4, 4, 4 },
      { 2, 1, 0 })
  end, "option eta = -5 is outside [0, 100]" },
  { "CFG NaN", function()
    local m = model()
    local cond = m.clip:encode({ "x", "" })
    return m.unet:denoiser { cond = cond:slice(1, 1), uncond = cond:slice(1, 2), cfg = 0 / 0 }
  end, "cfg = nan is not a finite number" },
  { "CFG infinite", function()
    local m = model()
    local cond = m.clip:encode({ "x", "" })
    return m.unet:denoiser { cond = cond:slice(1, 1), uncond = cond:slice(1, 2), cfg = math.huge }
  end, "cfg = inf is not a finite number" },
  { "NaN sigma", function()
    local x = difusa.zeros { 1, 4, 4, 4 }
    return difusa.sampler("euler")(function(v) return v end, x, { 0 / 0, 0 })
  end, "sigmas[0] = ", "is not a noise level" },
  { "increasing sigmas", function()
    local x = difusa.zeros { 1, 4, 4, 4 }
    return difusa.sampler("euler")(function(v) return v end, x, { 1, 2, 0 })
  end, "sigmas must not increase (sigmas[1] = 2 > sigmas[0] = 1)" },
  { "non-UTF-8 prompt", function() return model().clip:encode("a red \xff\xfe circle") end,
    "invalid UTF-8 at byte 6" },
  { "class label out of range", function()
    local dit = assert(difusa.load_dit("tests/fixtures/dit/p4.safetensors", { heads = 2 }))
    return dit:denoiser { labels = { 5000 }, cfg = 4 }
  end, "class 5000 outside 0..10" },
  -- plugins
  { "plugin with the wrong ABI", function() return difusa.plugins.load(build .. "/tests/plugins/bad_abi.so") end,
    "bad_abi.so: plugin ABI version 99.0, but this host speaks" },
  { "plugin without the entry symbol", function()
    return difusa.plugins.load(build .. "/tests/plugins/no_entry.so")
  end, "no_entry.so: not a difusa plugin: no symbol difusa_plugin_entry" },
  { "plugin whose init fails", function()
    return difusa.plugins.load(build .. "/tests/plugins/init_fail.so")
  end, "init_fail.so: plugin test-plugin: init failed" },
  { "not a shared object", function() return difusa.plugins.load("README.md") end, "README.md",
    "invalid ELF header" },
  -- Lua callbacks
  { "callback that raises", function()
    local x = difusa.randn { 1, 4, 4, 4, seed = 2 }
    return difusa.sampler("euler")(function(v) return v * 0.5 end, x, { 2, 1, 0 },
      { callback = function() error("stop here, from Lua") end })
  end, "stop here, from Lua" },
  { "callback that yields", function()
    local co = coroutine.wrap(function()
      local x = difusa.randn { 1, 4, 4, 4, seed = 2 }
      return difusa.sampler("euler")(function(v) return v * 0.5 end, x, { 2, 1, 0 },
        { callback = function() coroutine.yield(1) end })
    end)
    return co()
  end, "attempt to yield across a C-call boundary" },
  { "Lua denoiser returning the wrong shape", function()
    local x = difusa.randn { 1, 4, 4, 4, seed = 2 }
    return difusa.sampler("euler")(function() return difusa.zeros { 1, 4, 2, 2 } end, x, { 2, 1, 0 })
  end, "denoiser returned F32 (1, 4, 2, 2) on cpu for x (1, 4, 4, 4)" },
  { "Lua denoiser returning nothing", function()
    local x = difusa.randn { 1, 4, 4, 4, seed = 2 }
    return difusa.sampler("euler")(function() end, x, { 2, 1, 0 })
  end, "denoiser returned something else, not a tensor" },
  { "tensors of different shapes", function() return difusa.zeros { 2, 3 } + difusa.zeros { 3, 2 } end,
    "shapes (2, 3) and (3, 2) do not broadcast" },
}

for i, c in ipairs(CASES) do
  local name = string.format("case_%02d_%s", i, c[1]:gsub("[^%w]+", "_"))
  T[name] = function()
    local msg = fails(c[2], table.unpack(c, 3))
    print(string.format("  %-42s %s", c[1] .. ":", (msg:gsub("\n.*", ""))))
  end
end

function T.the_matrix_has_at_least_30_cases() assert(#CASES >= 30, #CASES .. " cases") end

-- after all of it, the state still works
function T.zz_the_lua_state_is_still_usable()
  local out = one_step(model())
  assert(#out:shape() == 4)
end

return T
