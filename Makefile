# NeuronBus build. `make` builds libneuronbus (static and shared) and the
# runtime; `make test` runs every test; `make run` runs the demo topology.
# SAN=address (ASan+UBSan) or SAN=thread (TSan) builds into build/$(SAN).
# Missing Debian packages are installed first by `make deps`.

SAN ?=
BUILD ?= build/$(if $(SAN),$(SAN),default)
CC ?= cc
OPT ?= -O2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes \
  -Wno-unused-parameter -g $(OPT) -fPIC -fno-semantic-interposition -pthread -Icore
ifeq ($(SAN),address)
  CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDSAN := -fsanitize=address,undefined
else ifeq ($(SAN),thread)
  CFLAGS_BASE += -fsanitize=thread -fno-omit-frame-pointer
  LDSAN := -fsanitize=thread
else ifneq ($(SAN),)
  $(error SAN must be address or thread, got "$(SAN)")
endif
CFLAGS_ALL = $(CFLAGS_BASE) $(CFLAGS)
LDLIBS_CORE := -pthread -lm $(LDSAN)

# Lazily expanded: evaluated after `deps` has installed the packages.
LUAJIT_CFLAGS = $(shell pkg-config --cflags luajit)
LUAJIT_LIBS = $(shell pkg-config --libs luajit)
UV_CFLAGS = $(shell pkg-config --cflags libuv)
UV_LIBS = $(shell pkg-config --libs libuv)

CORE_SRC := $(wildcard core/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
CORE_TESTS := $(patsubst %.c,$(BUILD)/%,$(wildcard spec/core/test_*.c spec/core/validate_*.c))
RT_SRC := $(filter-out runtime/main.c,$(wildcard runtime/*.c))
RT_OBJ := $(RT_SRC:%.c=$(BUILD)/%.o)
RT_TESTS := $(patsubst %.c,$(BUILD)/%,$(wildcard spec/runtime/test_*.c))
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(patsubst %.c,$(BUILD)/%,$(BENCH_SRC))

LIB_A := $(BUILD)/libneuronbus.a
LIB_SO := $(BUILD)/libneuronbus.so
NB_BIN := $(BUILD)/neuronbus
RT_SO := $(BUILD)/libnbruntime.so

# The Lua cdefs, generated from core/nb_spike.h (BEGIN/END LAYOUT) and
# runtime/nb_rt.h (BEGIN/END FFI): one source of truth for the layout.
LAYOUT_LUA := lua/neuronbus/layout.lua

ifeq ($(wildcard runtime/main.c),)
  RUNTIME_TARGETS :=
else
  RUNTIME_TARGETS := $(NB_BIN) $(RT_SO) $(LAYOUT_LUA)
endif

.PHONY: all core runtime test run deps bench bench-plot clean fuzz
all: core runtime
core: $(LIB_A) $(LIB_SO)
runtime: $(RUNTIME_TARGETS)

deps:
	@./.ci/deps

$(BUILD)/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(if $(filter runtime/%,$<),$(LUAJIT_CFLAGS) $(UV_CFLAGS)) -MMD -MP -c $< -o $@

$(LIB_A): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB_SO): $(CORE_OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS_CORE)

# The runtime library does NOT link LuaJIT: its lua_* references stay
# undefined and bind to the LuaJIT of the process that loads it (Debian's
# /usr/bin/luajit is static and exports the C API), so every state the
# runtime makes in a busted process is made and driven by that one copy
# (spec/runtime/one_luajit_spec.lua checks it). nodelete: busted's state
# may collect the ffi.load handle before the runtimes it still frees.
$(RT_SO): $(RT_OBJ) $(LIB_A)
	$(CC) -shared -Wl,-z,nodelete -o $@ $(RT_OBJ) $(LIB_A) $(UV_LIBS) $(LDLIBS_CORE)

$(LAYOUT_LUA): core/nb_spike.h runtime/nb_rt.h lua/neuronbus/gen_cdefs.lua | deps
	luajit lua/neuronbus/gen_cdefs.lua core/nb_spike.h runtime/nb_rt.h $@

$(NB_BIN): $(BUILD)/runtime/main.o $(RT_OBJ) $(LIB_A)
	$(CC) -o $@ $^ $(UV_LIBS) $(LUAJIT_LIBS) $(LDLIBS_CORE) -Wl,-E

$(BUILD)/spec/core/%: spec/core/%.c $(LIB_A) spec/nbtest.h | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Ispec -o $@ $< $(LIB_A) $(LDLIBS_CORE)

$(BUILD)/spec/runtime/%: spec/runtime/%.c $(RT_OBJ) $(LIB_A) spec/nbtest.h | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LUAJIT_CFLAGS) $(UV_CFLAGS) -Ispec -Iruntime -o $@ $< $(RT_OBJ) $(LIB_A) $(UV_LIBS) $(LUAJIT_LIBS) $(LDLIBS_CORE) -Wl,-E

$(BUILD)/bench/%: bench/%.c $(wildcard bench/*.h) $(RT_OBJ) $(LIB_A) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LUAJIT_CFLAGS) $(UV_CFLAGS) -Ibench -Iruntime -o $@ $< $(RT_OBJ) $(LIB_A) $(UV_LIBS) $(LUAJIT_LIBS) $(LDLIBS_CORE) -Wl,-E

test: all $(CORE_TESTS) $(RT_TESTS) $(BENCH_BIN)
	@NB_SAN=$(SAN) ./spec/run.sh $(BUILD) $(SAN)

run: all
	./$(NB_BIN) run agents/demo.lua --for 3s --stats

bench: all $(BENCH_BIN)
	@./bench/run.sh $(BUILD)

# Renders bench/results.json (and bench/history/) to bench/ratios.svg;
# installs gnuplot-nox first when it is missing and we are root.
bench-plot:
	@command -v gnuplot >/dev/null 2>&1 || { [ "$$(id -u)" -eq 0 ] && \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null; } || \
	  { echo "bench-plot: gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 1; }
	@./bench/plot.sh

# libFuzzer target for the link's frame decoder and handshake parser
# (spec/fuzz/fuzz_frames.c). `make fuzz FUZZ_TIME=60` fuzzes for that many
# seconds: new inputs go to build/fuzz/corpus, the kept seeds are
# spec/fuzz/corpus (read only), crashes land in build/fuzz/.
FUZZ_TIME ?= 60
FUZZ_CC ?= clang
FUZZ_DIR := build/fuzz
FUZZ_BIN := $(FUZZ_DIR)/fuzz_frames
FUZZ_SRC := spec/fuzz/fuzz_frames.c runtime/nb_link_wire.c core/nb_frame.c \
  core/nb_spike.c core/nb_err.c
FUZZ_HDR := runtime/nb_link_wire.h core/nb_frame.h core/nb_spike.h core/nb_err.h

$(FUZZ_BIN): $(FUZZ_SRC) $(FUZZ_HDR) | deps
	@mkdir -p $(FUZZ_DIR)/corpus
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -Icore -Iruntime -o $@ $(FUZZ_SRC) -pthread

.PHONY: fuzz-build
fuzz-build: $(FUZZ_BIN)

fuzz: $(FUZZ_BIN)
	$(FUZZ_BIN) -max_total_time=$(FUZZ_TIME) -max_len=16384 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus spec/fuzz/corpus

clean:
	rm -rf build

-include $(CORE_OBJ:.o=.d) $(RT_OBJ:.o=.d)
