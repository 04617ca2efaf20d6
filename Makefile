# NeuronBus build. `make` builds libneuronbus (static and shared) and the
# runtime; `make test` runs every test; `make run` runs the demo topology
# (`make run-learning` the learning demo);
# `make install PREFIX=/usr/local` (and DESTDIR) installs the command, the
# libraries, the core headers and the Lua modules.
# SAN=address (ASan+UBSan) or SAN=thread (TSan) builds into build/$(SAN).
#
# Packages: `make deps` installs the missing Debian packages (compiler,
# pkg-config, LuaJIT, libuv, libcurl, jansson, libsodium, libmicrohttpd,
# graphviz, gnuplot, python3-prometheus-client, lua-cjson, busted); `make test`, `make run` and
# `make bench` run it first. Any other build only checks them and names
# what is missing. The fuzzing toolchain (clang, libFuzzer) is installed
# only by `make fuzz` and `make fuzz-build`.

SAN ?=
BUILD ?= build/$(if $(SAN),$(SAN),default)
CC ?= cc
OPT ?= -O2
PREFIX ?= /usr/local
DESTDIR ?=

# Flags: every compile uses CFLAGS_ALL; code that includes the runtime adds
# HOST_CFLAGS; a program linking the runtime adds HOST_LIBS.
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes \
  -Wno-unused-parameter -g $(OPT) -fPIC -fno-semantic-interposition -pthread -Icore
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ifeq ($(SAN),address)
  SAN_FLAGS := $(ASAN_FLAGS)
else ifeq ($(SAN),thread)
  SAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
else ifneq ($(SAN),)
  $(error SAN must be address or thread, got "$(SAN)")
endif
CFLAGS_ALL = $(CFLAGS_BASE) $(SAN_FLAGS) $(CFLAGS) -MMD -MP
LDLIBS_CORE = $(SAN_FLAGS) $(LDFLAGS) -pthread -lm
# Lazily expanded: pkg-config runs after `deps` has installed the packages.
# libcurl: nb.http (runtime/nb_rt_http.c) runs on the runtime's loop.
# jansson: the statistics' JSON lines (runtime/nb_rt_json.c).
# libsodium: the links' authentication and encryption (runtime/nb_link_auth.c).
# libmicrohttpd: the --http endpoint (runtime/nb_rt_httpd.c).
# libnats: the NATS link backend (runtime/nb_link_nats.c).
HOST_CFLAGS = $(shell pkg-config --cflags luajit libuv libcurl jansson libsodium libmicrohttpd libnats) -Iruntime
UV_LIBS = $(shell pkg-config --libs libuv libcurl jansson libsodium libmicrohttpd libnats)
# -Wl,-E: the agent states' FFI finds the nb_rt_* functions in the program.
HOST_LIBS = $(UV_LIBS) $(shell pkg-config --libs luajit) $(LDLIBS_CORE) -Wl,-E

CORE_SRC := $(wildcard core/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
CORE_TESTS := $(patsubst %.c,$(BUILD)/%,$(wildcard spec/core/test_*.c spec/core/validate_*.c))
RT_SRC := $(filter-out runtime/main.c,$(wildcard runtime/*.c))
RT_OBJ := $(RT_SRC:%.c=$(BUILD)/%.o)
RT_TESTS := $(patsubst %.c,$(BUILD)/%,$(wildcard spec/runtime/test_*.c))
BENCH_BIN := $(patsubst %.c,$(BUILD)/%,$(wildcard bench/*.c))
# The core's public headers: not its internals (nb__*.h, *_internal.h).
PUBLIC_HDR := $(filter-out core/nb__% %_internal.h,$(wildcard core/*.h))

LIB_A := $(BUILD)/libneuronbus.a
LIB_SO := $(BUILD)/libneuronbus.so
NB_BIN := $(BUILD)/neuronbus
RT_SO := $(BUILD)/libnbruntime.so

# The Lua cdefs, generated from core/nb_spike.h (BEGIN/END LAYOUT) and
# runtime/nb_rt_ffi.h (BEGIN/END FFI): one source of truth for the layout. It
# also carries the error map and the BEGIN/END CONSTANTS blocks of
# CONST_H: limits and defaults C and Lua share.
LAYOUT_LUA := lua/neuronbus/layout.lua
CONST_H := $(sort $(wildcard core/*.h)) runtime/nb_rt_defaults.h

# The goals that install missing packages first; any other build checks.
DEPS_STEP := $(if $(filter deps test run bench,$(MAKECMDGOALS)),deps,deps-check)

.PHONY: all core runtime test run run-learning soak deps deps-check deps-fuzz bench bench-plot plot \
  install clean fuzz fuzz-build fuzz-replay
all: core runtime
core: $(LIB_A) $(LIB_SO)
runtime: $(NB_BIN) $(RT_SO) $(LAYOUT_LUA)

deps:
	@./.ci/deps
deps-check:
	@./.ci/deps --check
deps-fuzz:
	@./.ci/deps fuzz

# Every compile waits for the packages (order-only: installing them does not
# make a build out of date).
$(BUILD)/%.o: %.c | $(DEPS_STEP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(if $(filter runtime/%,$<),$(HOST_CFLAGS)) -c $< -o $@

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

$(LAYOUT_LUA): core/nb_spike.h runtime/nb_rt_ffi.h $(CONST_H) lua/neuronbus/gen_cdefs.lua | $(DEPS_STEP)
	luajit lua/neuronbus/gen_cdefs.lua core/nb_spike.h runtime/nb_rt_ffi.h $@ $(CONST_H)

$(NB_BIN): $(BUILD)/runtime/main.o $(RT_OBJ) $(LIB_A)
	$(CC) -o $@ $^ $(HOST_LIBS)

$(BUILD)/spec/core/%: spec/core/%.c $(LIB_A) | $(DEPS_STEP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Ispec -o $@ $< $(LIB_A) $(LDLIBS_CORE)

$(BUILD)/spec/runtime/%: spec/runtime/%.c $(RT_OBJ) $(LIB_A) | $(DEPS_STEP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(HOST_CFLAGS) -Ispec -o $@ $< $(RT_OBJ) $(LIB_A) $(HOST_LIBS)

$(BUILD)/bench/%: bench/%.c $(RT_OBJ) $(LIB_A) | $(DEPS_STEP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(HOST_CFLAGS) -Ibench -o $@ $< $(RT_OBJ) $(LIB_A) $(HOST_LIBS)

test: deps all $(CORE_TESTS) $(RT_TESTS) $(BENCH_BIN)
	@NB_SAN=$(SAN) ./spec/run.sh $(BUILD) $(SAN)

run: deps all
	./$(NB_BIN) run agents/demo.lua --for 3s --stats

# The learning demo (docs/learning.md): a router learns the best worker.
run-learning: deps all
	./$(NB_BIN) run agents/learning.lua --for 4s

# The long versions of the soak tests (make test sizes each to ~a minute).
SOAK_PAYLOADS ?= 200000000
soak: deps all
	@NB_BUILD=$(BUILD) NB_SOAK_PAYLOADS=$(SOAK_PAYLOADS) bash spec/e2e/payload_soak.sh
	@NB_BUILD=$(BUILD) NB_SOAK_PAYLOADS=$(SOAK_PAYLOADS) bash spec/e2e/workers_soak.sh

bench: deps all $(BENCH_BIN)
	@./bench/run.sh $(BUILD)

# Renders bench/results.json (and bench/history/) to bench/ratios.svg;
# installs gnuplot-nox first when it is missing and we are root.
bench-plot:
	@command -v gnuplot >/dev/null 2>&1 || { [ "$$(id -u)" -eq 0 ] && \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null; } || \
	  { echo "bench-plot: gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 1; }
	@./bench/plot.sh

# Renders STATS, the JSON lines of `neuronbus run --stats-file`, to an SVG
# beside it with gnuplot (neuronbus plot; docs/observability.md).
plot: all
	@test -n "$(STATS)" || { echo "usage: make plot STATS=run.jsonl (the lines of neuronbus run --stats-file)" >&2; exit 1; }
	./$(NB_BIN) plot $(STATS)

# PREFIX/bin/neuronbus finds the Lua modules in ../share/lua/5.1 and
# neuronbus.testing finds libnbruntime.so in PREFIX/lib, so the tree may be
# moved as a whole (DESTDIR staging too). The neuronbus/ folders are ours
# alone: they are replaced, so a module or header that moved or went away
# leaves no stale copy that would load first.
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib
	install -m 755 $(NB_BIN) $(DESTDIR)$(PREFIX)/bin/neuronbus
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(RT_SO) $(DESTDIR)$(PREFIX)/lib/
	rm -rf $(DESTDIR)$(PREFIX)/include/neuronbus $(DESTDIR)$(PREFIX)/share/lua/5.1/neuronbus
	install -d $(DESTDIR)$(PREFIX)/include/neuronbus
	install -m 644 $(PUBLIC_HDR) $(DESTDIR)$(PREFIX)/include/neuronbus/
	cd lua && find neuronbus -name '*.lua' | while read -r f; do \
	  install -D -m 644 "$$f" "$(DESTDIR)$(PREFIX)/share/lua/5.1/$$f" || exit 1; done

# Fuzzing, with libFuzzer (clang) in `make fuzz FUZZ_TIME=60`, each target
# for that many seconds (new inputs go to build/fuzz/corpus_<name>, the
# kept seeds are spec/fuzz/corpus_<name>, read only; crashes land in
# build/fuzz/). The targets and what each checks (docs/testing.md has
# more):
#   frames    the link's frame decoder and handshake parser
#             (spec/fuzz/fuzz_frames.c, seeds spec/fuzz/corpus): verdicts
#             do not depend on how the stream is cut, a HELLO re-encodes
#             to its bytes;
#   stats     the statistics' JSON writer (spec/fuzz/fuzz_stats.c): its
#             line always parses, whatever bytes the names hold;
#   arena     opening an arena file and using it (spec/fuzz/fuzz_arena.c):
#             bad files get the error an oracle expects, references stay
#             in the data region whatever the shared tables say, a clean
#             arena reads back what was written and ends all free;
#   manifest  the manifest loader as `neuronbus check` runs it
#             (spec/fuzz/fuzz_manifest.c: manifests from a grammar of the
#             schema, or raw source): no crash, every refusal has a
#             message, one line of valid UTF-8 a problem;
#   nats      the NATS messages' decoder (spec/fuzz/fuzz_nats.c): batches,
#             acks, cards: counts and bounds, round trips, prefixes refused
#   link      the TCP link session (spec/fuzz/fuzz_link.c): a listening
#             node, a well-behaved peer node and scripted callers on
#             loopback, on a virtual clock: per link sent == acked + lost +
#             queued + in_doubt, no link taken over without the secret,
#             the connections back to the baseline at the end;
#   link_auth the authentication and records alone
#             (spec/fuzz/fuzz_link_auth.c): in every state, verdicts do not
#             depend on the cut, failures are sticky with a reason, sealed
#             bytes open to themselves.
# `make fuzz-replay` builds the same targets with cc, ASan and UBSan and a
# main of its own (spec/fuzz/replay.c) that replays the corpus and seeded
# mutations of it: what make test runs (spec/e2e/fuzz_smoke.sh), without
# the clang toolchain.
FUZZ_TIME ?= 60
FUZZ_CC ?= clang
FUZZ_DIR := build/fuzz
FUZZ_BIN := $(FUZZ_DIR)/fuzz_frames
FUZZ_REPLAY := $(FUZZ_DIR)/replay_frames
FUZZ_SRC := spec/fuzz/fuzz_frames.c runtime/nb_link_wire.c core/nb_frame.c \
  core/nb_spike.c core/nb_err.c
FUZZ_HDR := runtime/nb_link_wire.h runtime/nb_le_internal.h core/nb_frame.h core/nb_spike.h core/nb_err.h
FUZZ_STATS_BIN := $(FUZZ_DIR)/fuzz_stats
FUZZ_STATS_REPLAY := $(FUZZ_DIR)/replay_stats
FUZZ_STATS_SRC := spec/fuzz/fuzz_stats.c runtime/nb_rt_json.c
FUZZ_STATS_HDR := runtime/nb_rt_json.h spec/fuzz/fuzz_utf8.h
FUZZ_ARENA_BIN := $(FUZZ_DIR)/fuzz_arena
FUZZ_ARENA_REPLAY := $(FUZZ_DIR)/replay_arena
FUZZ_ARENA_SRC := spec/fuzz/fuzz_arena.c core/nb_arena.c core/nb_spike.c core/nb_err.c
FUZZ_ARENA_HDR := core/nb_arena.h core/nb_spike.h core/nb_err.h
# The manifest target builds the whole runtime with it (the validator's
# Lua is found beside the binary: build/fuzz/../../lua).
FUZZ_MANIFEST_BIN := $(FUZZ_DIR)/fuzz_manifest
FUZZ_MANIFEST_REPLAY := $(FUZZ_DIR)/replay_manifest
FUZZ_MANIFEST_SRC := spec/fuzz/fuzz_manifest.c $(RT_SRC) $(CORE_SRC)
FUZZ_MANIFEST_HDR := $(wildcard runtime/*.h core/*.h) spec/fuzz/fuzz_utf8.h
# The link targets: the link's sources with libuv and libsodium.
FUZZ_LINK_BIN := $(FUZZ_DIR)/fuzz_link
FUZZ_LINK_REPLAY := $(FUZZ_DIR)/replay_link
FUZZ_LINK_SRC := spec/fuzz/fuzz_link.c runtime/nb_link.c runtime/nb_link_auth.c \
  runtime/nb_link_limits.c runtime/nb_link_wire.c $(CORE_SRC)
FUZZ_LINK_HDR := runtime/nb_link.h runtime/nb_link_auth.h runtime/nb_link_internal.h \
  runtime/nb_link_wire.h runtime/nb_rt_defaults.h $(wildcard core/*.h)
FUZZ_AUTH_BIN := $(FUZZ_DIR)/fuzz_link_auth
FUZZ_AUTH_REPLAY := $(FUZZ_DIR)/replay_link_auth
FUZZ_AUTH_SRC := spec/fuzz/fuzz_link_auth.c runtime/nb_link_auth.c \
  runtime/nb_link_wire.c core/nb_frame.c core/nb_spike.c core/nb_err.c
FUZZ_AUTH_HDR := runtime/nb_link_auth.h runtime/nb_link_wire.h runtime/nb_le_internal.h runtime/nb_rt_defaults.h
# The NATS messages' decoder (pure functions, no libnats).
FUZZ_NATS_BIN := $(FUZZ_DIR)/fuzz_nats
FUZZ_NATS_REPLAY := $(FUZZ_DIR)/replay_nats
FUZZ_NATS_SRC := spec/fuzz/fuzz_nats.c runtime/nb_nats_wire.c runtime/nb_link_wire.c \
  core/nb_frame.c core/nb_spike.c core/nb_err.c
FUZZ_NATS_HDR := runtime/nb_nats_wire.h runtime/nb_link_wire.h runtime/nb_le_internal.h core/nb_frame.h core/nb_spike.h
FUZZ_CFLAGS = $(CFLAGS_BASE) $(CFLAGS) -Iruntime
FUZZ_LINK_CFLAGS = $(FUZZ_CFLAGS) $(shell pkg-config --cflags libuv libsodium)
FUZZ_LINK_LIBS = $(shell pkg-config --libs libuv libsodium) -ldl -pthread -lm
FUZZ_STATS_LIBS = $(shell pkg-config --libs jansson) -lm
FUZZ_MANIFEST_CFLAGS = $(FUZZ_CFLAGS) $(HOST_CFLAGS) -O1
FUZZ_MANIFEST_LIBS = $(UV_LIBS) $(shell pkg-config --libs luajit) -pthread -lm -Wl,-E

$(FUZZ_BIN): $(FUZZ_SRC) $(FUZZ_HDR) | deps-fuzz
	@mkdir -p $(FUZZ_DIR)/corpus
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(ASAN_FLAGS) -o $@ $(FUZZ_SRC)

$(FUZZ_REPLAY): spec/fuzz/replay.c $(FUZZ_SRC) $(FUZZ_HDR) | $(DEPS_STEP)
	@mkdir -p $(FUZZ_DIR)
	$(CC) $(FUZZ_CFLAGS) $(ASAN_FLAGS) -o $@ spec/fuzz/replay.c $(FUZZ_SRC)

$(FUZZ_STATS_BIN): $(FUZZ_STATS_SRC) $(FUZZ_STATS_HDR) | deps-fuzz
	@mkdir -p $(FUZZ_DIR)/corpus_stats
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(ASAN_FLAGS) -o $@ $(FUZZ_STATS_SRC) $(FUZZ_STATS_LIBS)

$(FUZZ_STATS_REPLAY): spec/fuzz/replay.c $(FUZZ_STATS_SRC) $(FUZZ_STATS_HDR) | $(DEPS_STEP)
	@mkdir -p $(FUZZ_DIR)
	$(CC) $(FUZZ_CFLAGS) $(ASAN_FLAGS) -o $@ spec/fuzz/replay.c $(FUZZ_STATS_SRC) $(FUZZ_STATS_LIBS)

$(FUZZ_ARENA_BIN): $(FUZZ_ARENA_SRC) $(FUZZ_ARENA_HDR) | deps-fuzz
	@mkdir -p $(FUZZ_DIR)/corpus_arena
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(ASAN_FLAGS) -o $@ $(FUZZ_ARENA_SRC)

$(FUZZ_ARENA_REPLAY): spec/fuzz/replay.c $(FUZZ_ARENA_SRC) $(FUZZ_ARENA_HDR) | $(DEPS_STEP)
	@mkdir -p $(FUZZ_DIR)
	$(CC) $(FUZZ_CFLAGS) $(ASAN_FLAGS) -o $@ spec/fuzz/replay.c $(FUZZ_ARENA_SRC)

$(FUZZ_MANIFEST_BIN): $(FUZZ_MANIFEST_SRC) $(FUZZ_MANIFEST_HDR) | deps-fuzz
	@mkdir -p $(FUZZ_DIR)/corpus_manifest
	$(FUZZ_CC) $(FUZZ_MANIFEST_CFLAGS) -fsanitize=fuzzer $(ASAN_FLAGS) -o $@ \
	  $(FUZZ_MANIFEST_SRC) $(FUZZ_MANIFEST_LIBS)

$(FUZZ_MANIFEST_REPLAY): spec/fuzz/replay.c $(FUZZ_MANIFEST_SRC) $(FUZZ_MANIFEST_HDR) | $(DEPS_STEP)
	@mkdir -p $(FUZZ_DIR)
	$(CC) $(FUZZ_MANIFEST_CFLAGS) $(ASAN_FLAGS) -o $@ spec/fuzz/replay.c \
	  $(FUZZ_MANIFEST_SRC) $(FUZZ_MANIFEST_LIBS)

$(FUZZ_LINK_BIN): $(FUZZ_LINK_SRC) $(FUZZ_LINK_HDR) | deps-fuzz
	@mkdir -p $(FUZZ_DIR)/corpus_link
	$(FUZZ_CC) $(FUZZ_LINK_CFLAGS) -fsanitize=fuzzer $(ASAN_FLAGS) -o $@ \
	  $(FUZZ_LINK_SRC) $(FUZZ_LINK_LIBS)

$(FUZZ_LINK_REPLAY): spec/fuzz/replay.c $(FUZZ_LINK_SRC) $(FUZZ_LINK_HDR) | $(DEPS_STEP)
	@mkdir -p $(FUZZ_DIR)
	$(CC) $(FUZZ_LINK_CFLAGS) $(ASAN_FLAGS) -o $@ spec/fuzz/replay.c \
	  $(FUZZ_LINK_SRC) $(FUZZ_LINK_LIBS)

$(FUZZ_NATS_BIN): $(FUZZ_NATS_SRC) $(FUZZ_NATS_HDR) | deps-fuzz
	@mkdir -p $(FUZZ_DIR)/corpus_nats
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(ASAN_FLAGS) -o $@ $(FUZZ_NATS_SRC)

$(FUZZ_NATS_REPLAY): spec/fuzz/replay.c $(FUZZ_NATS_SRC) $(FUZZ_NATS_HDR) | $(DEPS_STEP)
	@mkdir -p $(FUZZ_DIR)
	$(CC) $(FUZZ_CFLAGS) $(ASAN_FLAGS) -o $@ spec/fuzz/replay.c $(FUZZ_NATS_SRC)

$(FUZZ_AUTH_BIN): $(FUZZ_AUTH_SRC) $(FUZZ_AUTH_HDR) | deps-fuzz
	@mkdir -p $(FUZZ_DIR)/corpus_link_auth
	$(FUZZ_CC) $(FUZZ_LINK_CFLAGS) -fsanitize=fuzzer $(ASAN_FLAGS) -o $@ \
	  $(FUZZ_AUTH_SRC) $(FUZZ_LINK_LIBS)

$(FUZZ_AUTH_REPLAY): spec/fuzz/replay.c $(FUZZ_AUTH_SRC) $(FUZZ_AUTH_HDR) | $(DEPS_STEP)
	@mkdir -p $(FUZZ_DIR)
	$(CC) $(FUZZ_LINK_CFLAGS) $(ASAN_FLAGS) -o $@ spec/fuzz/replay.c \
	  $(FUZZ_AUTH_SRC) $(FUZZ_LINK_LIBS)

fuzz-build: $(FUZZ_BIN) $(FUZZ_STATS_BIN) $(FUZZ_ARENA_BIN) $(FUZZ_MANIFEST_BIN) \
  $(FUZZ_LINK_BIN) $(FUZZ_AUTH_BIN) $(FUZZ_NATS_BIN)
fuzz-replay: $(FUZZ_REPLAY) $(FUZZ_STATS_REPLAY) $(FUZZ_ARENA_REPLAY) $(FUZZ_MANIFEST_REPLAY) \
  $(FUZZ_LINK_REPLAY) $(FUZZ_AUTH_REPLAY) $(FUZZ_NATS_REPLAY)

# The manifest and link targets: -timeout, since an input that runs for
# seconds is a finding too (the in-process check has no time limit of its
# own); the link target's -len_control lets its action scripts grow long
# early (a session needs dozens of actions to reach its deeper states);
# the manifest target's -detect_leaks=0, since its kept Lua state grows
# between inputs and makes libFuzzer run a full leak check after each one
# (30 runs a second instead of 1500): its replayer checks for leaks once,
# at exit, in make test.
fuzz: fuzz-build
	$(FUZZ_BIN) -max_total_time=$(FUZZ_TIME) -max_len=16384 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus spec/fuzz/corpus
	$(FUZZ_STATS_BIN) -max_total_time=$(FUZZ_TIME) -max_len=4096 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_DIR)/stats- $(FUZZ_DIR)/corpus_stats spec/fuzz/corpus_stats
	$(FUZZ_ARENA_BIN) -max_total_time=$(FUZZ_TIME) -max_len=16384 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_DIR)/arena- $(FUZZ_DIR)/corpus_arena spec/fuzz/corpus_arena
	$(FUZZ_MANIFEST_BIN) -max_total_time=$(FUZZ_TIME) -max_len=4096 -timeout=10 \
	  -detect_leaks=0 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/manifest- \
	  $(FUZZ_DIR)/corpus_manifest spec/fuzz/corpus_manifest
	$(FUZZ_LINK_BIN) -max_total_time=$(FUZZ_TIME) -max_len=1024 -len_control=10 \
	  -timeout=10 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/link- \
	  $(FUZZ_DIR)/corpus_link spec/fuzz/corpus_link
	$(FUZZ_AUTH_BIN) -max_total_time=$(FUZZ_TIME) -max_len=4096 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_DIR)/link_auth- $(FUZZ_DIR)/corpus_link_auth \
	  spec/fuzz/corpus_link_auth
	$(FUZZ_NATS_BIN) -max_total_time=$(FUZZ_TIME) -max_len=8192 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_DIR)/nats- $(FUZZ_DIR)/corpus_nats spec/fuzz/corpus_nats

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
