# difusa — one entry point: make, make test, make asan-test, make bench, make install
#
# Build flavours live in their own folders (build/release, build/asan) so an
# ASan run never mixes objects with a normal build.

PREFIX   ?= /usr/local
DESTDIR  ?=
LIBDIR   ?= $(PREFIX)/lib
INCDIR   ?= $(PREFIX)/include
PKGDIR   ?= $(LIBDIR)/pkgconfig
MANDIR   ?= $(PREFIX)/share/man

CC       ?= cc
# The CPU kernels are written to be auto-vectorised; override ARCH for a
# portable build (e.g. ARCH=-march=x86-64-v2).
ARCH     ?= -march=native
OPT      ?= -O2
BUILD    ?= build/release

# The tuned BLAS: OpenBLAS's OpenMP flavour, so a GEMM called inside one of our
# parallel regions runs single-threaded instead of oversubscribing the cores.
BLAS_DIR  ?= /usr/lib/$(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/openblas-openmp
BLAS_INC  ?= /usr/include/$(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/openblas-openmp
BLAS_LIBS ?= -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas

CFLAGS_COMMON = -std=c11 -Wall -Wextra $(OPT) $(ARCH) -D_GNU_SOURCE -fPIC -fopenmp \
                -fvisibility=hidden -I core -I $(BLAS_INC) $(EXTRA_CFLAGS)
# Debian's libstb ships the stb_image / stb_image_write implementations compiled.
LDLIBS_CORE   = $(BLAS_LIBS) -lclblast -lOpenCL -lstb -fopenmp -lm -lpthread
TEST_LIBS     = -lcriterion

DEBIAN_PKGS = build-essential pkg-config liblua5.4-dev lua5.4 ocl-icd-opencl-dev opencl-headers \
              pocl-opencl-icd libclblast-dev libstb-dev libcriterion-dev libopenblas-openmp-dev luarocks

CORE_SRC  = $(sort $(wildcard core/*.c core/*/*.c))
# The plugin loader and host (plugins/) are part of the core library.
CORE_SRC += $(sort $(wildcard plugins/*.c))
CL_SRC    = $(sort $(wildcard core/opencl/kernels/*.cl))
CORE_OBJ  = $(CORE_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/cl_kernels.o
# The CLIP tokenizer's merges (data/clip), embedded like the kernels.
CORE_OBJ += $(BUILD)/gen/clip_merges.o
TEST_SRC  = $(sort $(wildcard tests/test_*.c))
TEST_BIN  = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC = $(sort $(wildcard bench/*.c))
BENCH_BIN = $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

PUBLIC_HEADERS = core/df.h core/tensor.h core/ops.h core/backend.h core/rng.h core/opencl.h

LIB_A  = $(BUILD)/libdifusa.a
LIB_SO = $(BUILD)/libdifusa.so

# Sampler plugins: each samplers/*.c is a shared object built against
# plugins/difusa_plugin.h alone (-z defs: nothing left for libdifusa to resolve).
# The Lua binding: the `difusa` host (Lua 5.4 embedded) and the C module for
# the stock interpreter (require "difusa").
LUA_CFLAGS ?= $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
LUA_LIBS   ?= $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
LUA_SRC    = $(sort $(filter-out lua/host.c,$(wildcard lua/*.c)))
LUA_OBJ    = $(LUA_SRC:%.c=$(BUILD)/%.o)
HOST       = $(BUILD)/difusa
LUA_MODULE = $(BUILD)/lua/difusa.so
LUA_CMOD_DIR ?= $(LIBDIR)/lua/5.4

SAMPLER_SRC    = $(sort $(wildcard samplers/*.c))
SAMPLER_SO     = $(SAMPLER_SRC:samplers/%.c=$(BUILD)/samplers/%.so)
PLUGIN_CFLAGS  = -std=c11 -Wall -Wextra $(OPT) $(ARCH) -fPIC -fvisibility=hidden -I plugins $(EXTRA_CFLAGS)
PLUGIN_LDFLAGS = -shared -Wl,-z,defs -lm
# Test plugins (tests/test_plugin.c): one source, one variant per failure mode.
TEST_PLUGIN_SRC = tests/fixtures/sampler_plugins/test_plugin.c
TEST_PLUGINS    = good bad_abi no_entry init_fail dup_name small_desc bad_sampler
TEST_PLUGIN_SO  = $(TEST_PLUGINS:%=$(BUILD)/tests/plugins/%.so)

.PHONY: readme install-lua check-full all deps test asan-test bench install uninstall clean fixtures check-layers gpu-bundle
.PHONY: install-samplers demo demo-grid install-rock check-faults longrun tsan-test fuzz bench-full

all: $(LIB_A) $(LIB_SO)
all: $(SAMPLER_SO) $(HOST) $(LUA_MODULE)

# Installs the Debian packages the project needs when run as root; does
# nothing when they are all present.
deps:
	@missing=""; for p in $(DEBIAN_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "deps: missing$$missing (run 'make deps' as root, or apt-get install them)"; exit 1; fi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -MMD -MP -c $< -o $@

# The OpenCL kernels, embedded as one C string (no run-time file lookup).
$(BUILD)/gen/cl_kernels.c: $(CL_SRC) core/opencl/embed.sh
	@mkdir -p $(dir $@)
	sh core/opencl/embed.sh $(CL_SRC) > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/cl_kernels.o: $(BUILD)/gen/cl_kernels.c
	$(CC) $(CFLAGS_COMMON) -c $< -o $@

# The standard CLIP BPE merges (data/clip/merges.txt.gz) as one C string, so the
# default tokenizer needs no file at run time. Bytes other than printable ASCII,
# and \ " ?, are written as octal escapes: neither the compiler's input charset
# nor trigraphs can change them.
$(BUILD)/gen/clip_merges.c: data/clip/merges.txt.gz
	@mkdir -p $(dir $@)
	gzip -dc $< | od -An -v -tu1 | LC_ALL=C awk '\
	  BEGIN { print "/* Generated from data/clip/merges.txt.gz by the Makefile: do not edit. */"; \
	          print "#include <stddef.h>"; n = 0; \
	          printf "__attribute__((visibility(\"hidden\"))) const char df_clip_merges[] =\n    \"" } \
	  { for (i = 1; i <= NF; i++) { b = $$i + 0; n++; \
	      if (b == 10) printf "\\n\"\n    \""; \
	      else if (b >= 32 && b < 127 && b != 34 && b != 92 && b != 63) printf "%c", b; \
	      else printf "\\%03o", b } } \
	  END { print "\";"; \
	        print "__attribute__((visibility(\"hidden\"))) const size_t df_clip_merges_len = " n ";" }' > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/clip_merges.o: $(BUILD)/gen/clip_merges.c
	$(CC) $(CFLAGS_COMMON) -c $< -o $@

$(BUILD)/lua/%.o: lua/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -I . $(LUA_CFLAGS) -MMD -MP -c $< -o $@

$(HOST): $(LUA_OBJ) $(BUILD)/lua/host.o $(LIB_A) | $(SAMPLER_SO)
	$(CC) -o $@ $(LUA_OBJ) $(BUILD)/lua/host.o $(LIB_A) $(LUA_LIBS) $(LDLIBS_CORE) -ldl

$(LUA_MODULE): $(LUA_OBJ) $(LIB_A)
	$(CC) -shared -o $@ $(LUA_OBJ) $(LIB_A) $(LDLIBS_CORE) -ldl

$(LIB_A): $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LIB_SO): $(CORE_OBJ)
	$(CC) -shared -Wl,-soname,libdifusa.so.0 -o $@ $^ $(LDLIBS_CORE)

$(BUILD)/tests/%: tests/%.c tests/testutil.h tests/tmpdir.h $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -I tests -MMD -MP $< -o $@ $(LIB_A) $(TEST_LIBS) $(LDLIBS_CORE)

# The thread test runs Lua states: it links the Lua binding too.
$(BUILD)/tests/test_threads: tests/test_threads.c $(LIB_A) $(LUA_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(LUA_CFLAGS) -I tests -MMD -MP $< -o $@ $(LUA_OBJ) $(LIB_A) $(TEST_LIBS) $(LUA_LIBS) \
	  $(LDLIBS_CORE) -ldl

$(BUILD)/bench/%: bench/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -MMD -MP $< -o $@ $(LIB_A) $(LDLIBS_CORE)

$(BUILD)/samplers/%.so: samplers/%.c samplers/common.h plugins/difusa_plugin.h
	@mkdir -p $(dir $@)
	$(CC) $(PLUGIN_CFLAGS) -MMD -MP $< -o $@ $(PLUGIN_LDFLAGS)

$(BUILD)/tests/plugins/%.so: $(TEST_PLUGIN_SRC) plugins/difusa_plugin.h
	@mkdir -p $(dir $@)
	$(CC) $(PLUGIN_CFLAGS) -DTEST_PLUGIN_$(shell echo $* | tr a-z A-Z) $< -o $@ $(PLUGIN_LDFLAGS)

# The example out-of-tree plugin, built against the plugin header alone, laid
# out as an install lays it out (include/difusa/difusa_plugin.h).
$(BUILD)/plugin-sdk/difusa/difusa_plugin.h: plugins/difusa_plugin.h
	@mkdir -p $(dir $@)
	cp $< $@

$(BUILD)/tests/examples/%.so: examples/sampler_plugin/%.c $(BUILD)/plugin-sdk/difusa/difusa_plugin.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -O2 $(EXTRA_CFLAGS) -fPIC -I $(BUILD)/plugin-sdk $< -o $@ $(PLUGIN_LDFLAGS)

# The sampler and plugin tests load the built plugins (found next to the binary).
$(BUILD)/tests/test_threads: $(SAMPLER_SO)
$(filter $(BUILD)/tests/test_sampler% $(BUILD)/tests/test_plugin%,$(TEST_BIN)): $(SAMPLER_SO) $(TEST_PLUGIN_SO) \
  $(BUILD)/tests/examples/example_midpoint.so

# Runs every Criterion binary from the repository root (fixtures are found
# relative to it), then prints one summary line over all of them. Under CI
# (CI set) a machine without any OpenCL device fails the OpenCL suites
# instead of skipping them.
test: deps
	@$(MAKE) --no-print-directory check-layers $(TEST_BIN) $(HOST) $(LUA_MODULE) $(REPLAY_BIN)
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} DIFUSA_REQUIRE_OPENCL=$${DIFUSA_REQUIRE_OPENCL:-$${CI:+1}} \
	  BUILD=$(BUILD) sh tests/run.sh $(TEST_BIN) $(HOST) tests/install_test.sh tests/fuzz_replay.sh

asan-test: deps
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDLIBS_CORE="$(LDLIBS_CORE) -fsanitize=address,undefined" \
	  $(patsubst $(BUILD)/%,build/asan/%,$(TEST_BIN) $(HOST))
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  OMP_NUM_THREADS=2 sh tests/run.sh $(patsubst $(BUILD)/%,build/asan/%,$(TEST_BIN) $(HOST))

bench: deps $(BENCH_BIN)
	@for b in $(BENCH_BIN); do OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$$(nproc)} $$b || exit 1; done

# Full-size models against PyTorch (diffusers, fp32) and stable-diffusion.cpp on this machine, in one invocation
# (bench/full.sh; not in CI). Needs tools/.venv (PyTorch), ~25 GB of random-weight models generated under
# build/bench-models, and stable-diffusion.cpp's CLI from tools/build-sdcpp.sh (skipped when absent). Writes
# build/bench-full/ and copies the table and plot to docs/ for the README. BENCH_CASES picks a subset.
bench-full: deps all $(BUILD)/bench/sgemm_peak
	@test -x tools/.venv/bin/python || (python3 -m venv tools/.venv && tools/.venv/bin/pip install -r tools/requirements.txt)
	@tools/.venv/bin/python tools/gen_bench_models.py build/bench-models
	@HOST=$(HOST) sh bench/full.sh
	@cp build/bench-full/bench-full.md docs/bench-full.md
	@if [ -f build/bench-full/bench-full.png ]; then cp build/bench-full/bench-full.png docs/bench-full.png; fi

# Everything bench/gpu-check.sh needs on a GPU machine that has no packages:
# the binaries, the fixtures and every shared library but the C library's.
GPU_BUNDLE = build/gpu-bundle
gpu-bundle: $(BUILD)/tests/test_opencl $(BUILD)/tests/test_ops_opencl $(BUILD)/tests/test_clip_opencl \
            $(BUILD)/tests/test_unet_opencl $(BUILD)/tests/test_dit_opencl $(BUILD)/bench/bench_ops $(BUILD)/bench/opencl_devices \
            $(HOST) $(SAMPLER_SO)
	@rm -rf $(GPU_BUNDLE) && mkdir -p $(GPU_BUNDLE)/bin $(GPU_BUNDLE)/lib
	cp $(filter-out $(SAMPLER_SO),$^) $(GPU_BUNDLE)/bin/
	@mkdir -p $(GPU_BUNDLE)/bin/samplers && cp $(SAMPLER_SO) $(GPU_BUNDLE)/bin/samplers/
	@for b in $^; do ldd $$b | awk '$$3 ~ /^\// {print $$3}'; done | sort -u | \
	  grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' | \
	  while read -r l; do cp -L "$$l" $(GPU_BUNDLE)/lib/; done
	@tar -C $(dir $(GPU_BUNDLE)) -cf - $(notdir $(GPU_BUNDLE)) | xz -T0 -6 > $(GPU_BUNDLE).tar.xz
	@du -sh $(GPU_BUNDLE) $(GPU_BUNDLE).tar.xz

# Full-size checks against the references (Python and torch needed; the
# models, ~0.5 GB, are generated under build/check-full and not committed).
CHECK_SRC = $(sort $(wildcard tests/full/check_*.c))
CHECK_BIN = $(CHECK_SRC:tests/full/%.c=$(BUILD)/tests/full/%)

$(BUILD)/tests/full/%: tests/full/%.c tests/testutil.h $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -I tests -MMD -MP $< -o $@ $(LIB_A) $(TEST_LIBS) $(LDLIBS_CORE)

check-full: deps $(CHECK_BIN)
	@test -x tools/.venv/bin/python || (python3 -m venv tools/.venv && tools/.venv/bin/pip install -r tools/requirements.txt)
	@test -f build/check-full/dit_xl2/expected.safetensors || tools/.venv/bin/python tools/gen_full_checks.py build/check-full
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$$(nproc)} sh tests/run.sh $(CHECK_BIN)

# The fuzz targets built without libFuzzer, to replay the committed corpus in make test (tests/fuzz_replay.sh).
REPLAY_BIN = $(FUZZ_TARGETS:%=$(BUILD)/fuzz/replay_%)
$(BUILD)/fuzz/replay_%: fuzz/fuzz_%.c fuzz/replay.c fuzz/fuzz_util.h $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -I plugins -MMD -MP $< fuzz/replay.c -o $@ $(LIB_A) $(LDLIBS_CORE) -ldl

# libFuzzer targets (fuzz/, clang): each runs FUZZ_SECONDS on its corpus (fuzz/corpus/<target>, the committed
# seeds and regressions, plus build/fuzz/corpus/<target>, what it finds) and prints its executions and coverage.
FUZZ_TARGETS = safetensors image prompt config plugin_desc
FUZZ_SECONDS ?= 60
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined
fuzz: deps
	@command -v clang > /dev/null || { echo "fuzz: needs clang, libclang-rt-14-dev and libomp-14-dev (apt-get install)"; exit 1; }
	@$(MAKE) --no-print-directory CC=clang BUILD=build/fuzz OPT="-O1 -g" \
	  EXTRA_CFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" build/fuzz/libdifusa.a
	@for t in $(FUZZ_TARGETS); do \
	  clang -std=c11 -O1 -g -D_GNU_SOURCE -fopenmp -I core -I plugins -I $(BLAS_INC) -fsanitize=fuzzer $(FUZZ_SAN) \
	    fuzz/fuzz_$$t.c -o build/fuzz/fuzz_$$t build/fuzz/libdifusa.a $(LDLIBS_CORE) || exit 1; done
	@for t in $(FUZZ_TARGETS); do mkdir -p build/fuzz/corpus/$$t; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=build/fuzz/crash-$$t- \
	    build/fuzz/corpus/$$t fuzz/corpus/$$t > build/fuzz/fuzz_$$t.log 2>&1 || { tail -n 40 build/fuzz/fuzz_$$t.log; exit 1; }; \
	  grep -E "^#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss_mb" build/fuzz/fuzz_$$t.log; done

# The thread test under ThreadSanitizer, in build/tsan. One OpenMP thread per team: libgomp itself is not
# built for ThreadSanitizer, so its own synchronisation would be reported; the two Lua states still run on
# two threads at once.
tsan-test: deps
	@$(MAKE) --no-print-directory BUILD=build/tsan OPT="-O1 -g -fno-omit-frame-pointer" \
	  LDLIBS_CORE="$(LDLIBS_CORE) -fsanitize=thread" \
	  EXTRA_CFLAGS="-fsanitize=thread -DTHREADS_MAIN" build/tsan/tests/test_threads
	OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1 build/tsan/tests/test_threads

# Fault injection over a whole tiny txt2img for every allocation in turn (tests/lua/test_faults.lua, which
# `make test` runs on 300 of them), under AddressSanitizer and LeakSanitizer: about half an hour.
check-faults: deps
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDLIBS_CORE="$(LDLIBS_CORE) -fsanitize=address,undefined" build/asan/difusa
	DIFUSA_FAULTS=all ASAN_OPTIONS=detect_leaks=1 build/asan/difusa tests/lua/run.lua tests/lua/test_faults.lua

# Long-run stability: 200 generations with the default model in one process (RSS after each, to
# build/longrun-rss.csv) and a 10 000-step run against its exact end point (bench/longrun.lua).
longrun: all
	$(HOST) bench/longrun.lua models/tiny-shapes $(BUILD)/longrun-rss.csv 200

# The README's first command: a picture from the project's own default model (models/tiny-shapes) with
# scripts/txt2img.lua, then a grid of four more prompts.
DEMO_PROMPT ?= a small red circle at the top on a blue background
demo: deps
	@$(MAKE) --no-print-directory all
	@$(HOST) scripts/txt2img.lua --model models/tiny-shapes --prompt "$(DEMO_PROMPT)" --cfg 3 --seed 1 \
	  -o $(BUILD)/demo.png
	@$(HOST) scripts/demo.lua models/tiny-shapes $(BUILD)/demo-grid.png

# The README's picture of the default model (committed): eight prompts, four seeds each.
demo-grid: all
	$(HOST) scripts/demo.lua models/tiny-shapes docs/demo-grid.png 4 readme

# The scripts' flag tables in README.md, from their own --help.
readme: $(HOST)
	$(HOST) scripts/lib/readme.lua README.md

# Regenerates tests/fixtures with the reference implementations (Python, torch;
# dev-time only: the tests never run Python).
fixtures:
	@test -x tools/.venv/bin/python || (python3 -m venv tools/.venv && tools/.venv/bin/pip install -r tools/requirements.txt)
	tools/.venv/bin/python tools/gen_op_fixtures.py tests/fixtures
	tools/.venv/bin/python tools/gen_rng_fixtures.py tests/fixtures
	tools/.venv/bin/python tools/gen_tokenizer_fixtures.py tests/fixtures
	tools/.venv/bin/pip install -q --no-deps -r tools/requirements-nodeps.txt
	tools/.venv/bin/python tools/gen_sampler_fixtures.py tests/fixtures
	tools/.venv/bin/python tools/gen_clip_fixtures.py tests/fixtures
	tools/.venv/bin/python tools/gen_unet_vae_fixtures.py tests/fixtures
	tools/.venv/bin/python tools/gen_image_fixtures.py tests/fixtures
	tools/.venv/bin/python tools/gen_pipeline_fixtures.py tests/fixtures
	tools/.venv/bin/python tools/gen_dit_fixtures.py tests/fixtures
	tools/.venv/bin/python tools/gen_dit_ddpm_fixture.py tests/fixtures

# core/ must never see Lua, and every header compiles on its own.
check-layers:
	@! grep -rn 'include.*lua' core/ || (echo "core/ includes Lua headers" && exit 1)
	@for h in $(wildcard core/*.h core/*/*.h); do \
	  echo "#include \"$$h\"" | $(CC) $(CFLAGS_COMMON) -I. -x c -fsyntax-only - || exit 1; done
	@for h in $(wildcard plugins/*.h); do \
	  echo "#include \"$$h\"" | $(CC) $(CFLAGS_COMMON) -I. -x c -fsyntax-only - || exit 1; done
	@! grep -n '#include "' samplers/*.c samplers/*.h | grep -v -e '"difusa_plugin.h"' -e '"common.h"' || \
	  (echo "samplers/ may include only difusa_plugin.h" && exit 1)
	@echo "check-layers: ok"

install: all install-samplers install-lua
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR)/difusa/io $(DESTDIR)$(PKGDIR)
	install -m 644 $(LIB_A) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/libdifusa.so.0
	ln -sf libdifusa.so.0 $(DESTDIR)$(LIBDIR)/libdifusa.so
	install -m 644 $(PUBLIC_HEADERS) $(DESTDIR)$(INCDIR)/difusa/
	install -m 644 core/io/safetensors.h core/io/image.h $(DESTDIR)$(INCDIR)/difusa/io/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(shell sed -n 's/^#define DF_VERSION "\(.*\)"/\1/p' core/df.h)|' \
	    -e 's|@BLAS_LIBS@|$(BLAS_LIBS)|' difusa.pc.in > $(DESTDIR)$(PKGDIR)/difusa.pc

# The host, the Lua C module (on the Lua 5.4 cpath) and the pipeline scripts.
install-lua: $(HOST) $(LUA_MODULE)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LUA_CMOD_DIR) $(DESTDIR)$(PREFIX)/share/difusa/scripts/lib
	install -m 755 $(HOST) $(DESTDIR)$(PREFIX)/bin/difusa
	install -m 755 $(LUA_MODULE) $(DESTDIR)$(LUA_CMOD_DIR)/difusa.so
	install -m 644 scripts/*.lua $(DESTDIR)$(PREFIX)/share/difusa/scripts/
	install -m 644 scripts/lib/*.lua $(DESTDIR)$(PREFIX)/share/difusa/scripts/lib/
	install -d $(DESTDIR)$(PREFIX)/share/difusa/data/imagenet
	install -m 644 data/imagenet/* $(DESTDIR)$(PREFIX)/share/difusa/data/imagenet/
	install -d $(DESTDIR)$(MANDIR)/man1
	install -m 644 man/difusa.1 $(DESTDIR)$(MANDIR)/man1/

# LuaRocks (difusa-scm-1.rockspec, build type "make": `luarocks make` builds with `make`, then runs this with
# the rock's folders, which it deploys to the tree): the module on the tree's cpath with the sampler plugins
# beside it (difusa/samplers, where the module and the host look in a rock tree), the scripts under the
# tree's Lua folder, the host in its bin.
INST_LIBDIR ?= $(LUA_CMOD_DIR)
INST_LUADIR ?= $(PREFIX)/share/lua/5.4
INST_BINDIR ?= $(PREFIX)/bin
install-rock: $(LUA_MODULE) $(SAMPLER_SO) $(HOST)
	install -d $(INST_LIBDIR)/difusa/samplers $(INST_BINDIR) \
	  $(INST_LUADIR)/difusa/scripts/lib $(INST_LUADIR)/difusa/data/imagenet
	install -m 755 $(LUA_MODULE) $(INST_LIBDIR)/difusa.so
	install -m 755 $(SAMPLER_SO) $(INST_LIBDIR)/difusa/samplers/
	install -m 755 $(HOST) $(INST_BINDIR)/difusa
	install -m 644 scripts/*.lua $(INST_LUADIR)/difusa/scripts/
	install -m 644 scripts/lib/*.lua $(INST_LUADIR)/difusa/scripts/lib/
	install -m 644 data/imagenet/* $(INST_LUADIR)/difusa/data/imagenet/

# The sampler plugins, the plugin ABI header (all an out-of-tree plugin needs),
# the registry and the schedules.
install-samplers: $(SAMPLER_SO)
	install -d $(DESTDIR)$(LIBDIR)/difusa/samplers $(DESTDIR)$(INCDIR)/difusa/sched
	install -m 755 $(SAMPLER_SO) $(DESTDIR)$(LIBDIR)/difusa/samplers/
	install -m 644 plugins/difusa_plugin.h plugins/registry.h $(DESTDIR)$(INCDIR)/difusa/
	install -m 644 core/sched/schedule.h core/sched/denoiser.h core/sched/brownian.h $(DESTDIR)$(INCDIR)/difusa/sched/

uninstall:
	rm -rf $(DESTDIR)$(LIBDIR)/difusa/samplers
	rm -f $(DESTDIR)$(LIBDIR)/libdifusa.a $(DESTDIR)$(LIBDIR)/libdifusa.so $(DESTDIR)$(LIBDIR)/libdifusa.so.0
	rm -rf $(DESTDIR)$(INCDIR)/difusa $(DESTDIR)$(PKGDIR)/difusa.pc
	rm -f $(DESTDIR)$(PREFIX)/bin/difusa $(DESTDIR)$(LUA_CMOD_DIR)/difusa.so
	rm -rf $(DESTDIR)$(PREFIX)/share/difusa
	rm -f $(DESTDIR)$(MANDIR)/man1/difusa.1

clean:
	rm -rf build

-include $(CORE_OBJ:.o=.d) $(TEST_BIN:=.d) $(BENCH_BIN:=.d)
-include $(SAMPLER_SO:.so=.d)
