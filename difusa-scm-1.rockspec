-- LuaRocks: `luarocks make` in a checkout (or `luarocks install` of a packed rock) builds difusa with its
-- Makefile and installs the Lua module, the sampler plugins, the pipeline scripts and the `difusa` host into
-- the rock tree. The C dependencies are Debian packages: `make deps` as root installs them.
rockspec_format = "3.0"
package = "difusa"
version = "scm-1"
source = {
  url = "git+https://github.com/difusa/difusa.git",
}
description = {
  summary = "Scriptable diffusion-model image generation (Stable Diffusion, DiT) in C with a Lua 5.4 API",
  detailed = [[
A C11 core (tensors, an OpenMP CPU backend on OpenBLAS, an OpenCL backend on CLBlast, safetensors,
torch-exact noise) with the CLIP text encoder, UNet, VAE and DiT of Stable Diffusion 1.x/2.x/SDXL and DiT
checkpoints, samplers as plugins, and Lua pipelines (txt2img, img2img, inpaint, DiT, score-based SDEs).]],
  labels = { "image", "machine-learning", "diffusion" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  CLBLAST = { header = "clblast_c.h" },
  OPENCL = { header = "CL/cl.h" },
}
build = {
  type = "make",
  build_variables = {
    LUA_CFLAGS = "-I$(LUA_INCDIR)",
  },
  install_target = "install-rock",
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    INST_BINDIR = "$(BINDIR)",
  },
}
