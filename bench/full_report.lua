-- make bench-full's table and plot data from bench/full.sh's results.txt:
--   difusa bench/full_report.lua results.txt table.md plot.dat
-- Per model and size: each tool's text-encode, UNet-step (CFG, batch 2) and VAE-decode seconds and peak RSS; the
-- step ratios of each peer to difusa (above 1: difusa is faster); the step's FLOPs as difusa's ops counted them
-- and the bound they give at the sgemm rate measured in the same run, with difusa's step as a multiple of it.
local src, md_path, dat_path = ...
local runs, order, peak = {}, {}, nil
for line in io.lines(src) do
  local r = {}
  for k, v in line:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) or v end
  if r.tool == "sgemm" then
    peak = r.gflops
  elseif r.tool then
    local key = r.model .. ":" .. r.size
    if not runs[key] then runs[key] = {}; order[#order + 1] = key end
    local seen = runs[key][r.tool] -- repeated runs: the best step (bench/full.sh's BENCH_REPEAT)
    if not seen or seen.error or (not r.error and r.step_s < seen.step_s) then runs[key][r.tool] = r end
  end
end
assert(peak, src .. ": no sgemm rate")

local tools = { "difusa", "difusa-im2col", "difusa-opencl", "torch", "sdcpp" }
local label = { difusa = "difusa (CPU)", ["difusa-im2col"] = "difusa (CPU, Winograd off)",
  ["difusa-opencl"] = "difusa (OpenCL on PoCL)", torch = "PyTorch fp32 (diffusers)",
  sdcpp = "stable-diffusion.cpp f16" }
local function num(v, fmt) return type(v) == "number" and string.format(fmt or "%.2f", v) or "—" end

local md = { string.format("BLAS sgemm rate measured in the same run: %.0f GFLOP/s.", peak), "",
  "| model | size | tool | text encode s | UNet step s (CFG) | VAE decode s | peak RSS MB | step: peer / difusa |",
  "|---|---|---|---|---|---|---|---|" }
local summary = { "", "| model | size | UNet GFLOP per step | bound s | difusa s | difusa / bound | " ..
  "PyTorch / difusa | sd.cpp / difusa |", "|---|---|---|---|---|---|---|---|" }
local dat = { "# case difusa/bound torch/bound sdcpp/bound (UNet step with CFG)" }
for _, key in ipairs(order) do
  local model, size = key:match("(.*):(.*)")
  local d = runs[key].difusa
  local dstep = d and not d.error and d.step_s
  for _, t in ipairs(tools) do
    local r = runs[key][t]
    if r then
      local ratio = (r.error or not dstep or t == "difusa") and "" or num(r.step_s / dstep) .. "x"
      md[#md + 1] = string.format("| %s | %d² | %s | %s | %s | %s | %s | %s |", model, size, label[t],
        r.error and "failed" or num(r.encode_s), num(r.step_s), num(r.decode_s), num(r.rss_mb, "%d"), ratio)
    end
  end
  local bound = d and d.step_gflop and d.step_gflop / peak
  local function rel(t)
    local r = runs[key][t]
    return r and not r.error and dstep and r.step_s / dstep
  end
  summary[#summary + 1] = string.format("| %s | %d² | %s | %s | %s | %s | %s | %s |", model, size,
    num(d and d.step_gflop, "%.0f"), num(bound), num(dstep), num(bound and dstep and dstep / bound),
    num(rel("torch")), num(rel("sdcpp")))
  local function over(t)
    local r = runs[key][t]
    return (r and not r.error and bound) and string.format("%.3f", r.step_s / bound) or "?"
  end
  dat[#dat + 1] = string.format("%s-%d %s %s %s", model, size, over("difusa"), over("torch"), over("sdcpp"))
end
local f = assert(io.open(md_path, "w"))
f:write(table.concat(md, "\n"), "\n", table.concat(summary, "\n"), "\n")
f:close()
f = assert(io.open(dat_path, "w"))
f:write(table.concat(dat, "\n"), "\n")
f:close()
io.write(table.concat(md, "\n"), "\n", table.concat(summary, "\n"), "\n")
