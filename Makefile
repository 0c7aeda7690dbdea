# p2pnet build.
#
#   make              build/libp2pnet.a and the Lua 5.4 module build/p2pnet/core.so
#   make test         every check CI runs (tests/run-all.sh); ends with "total: N passed, N failed"
#   make demo         runs examples/demo.lua
#   make bench        p2pnet (C and Lua) against ENet and kernel TCP on 127.0.0.1
#   make fuzz         every fuzz target for FUZZ_TIME seconds (and more rounds until 10^7 runs)
#   make soak         a mesh of real processes with churn for SOAK_TIME seconds (not in `make test`)
#   make natlab       only the NAT lab (specs 11 and 40-44; root, network namespaces)
#   make deps         installs the Debian packages the targets above need (only missing ones)
#
# One tree builds in several configurations, each in its own directory:
#   make BUILD=build-clang CC=clang          a clang build
#   make BUILD=build-asan SANITIZE=address,undefined
#   make BUILD=build-luajit LUA_PC=luajit    the module for LuaJIT / Lua 5.1 ABI
# The source lists are wildcards, so new csrc/p2p_*.c (protocol core), csrc/driver/*.c (the UDP
# driver and the simulator), csrc/lua/*.c (the Lua binding) and tests/test_*.c files join the
# build without edits here.

# make's built-in default for CC is "cc"; p2pnet defaults to gcc but CC=clang on the command
# line (or in the environment) wins.
ifeq ($(origin CC),default)
CC := gcc
endif
BUILD ?= build
LUA_PC ?= lua5.4
SANITIZE ?=
FUZZ_CC ?= clang
# 60 s per target makes about 2.4e7 executions on an idle 2-core machine (the parsers run at
# 30k-300k inputs/s, the host-level targets at 100-700), and 6e6 when other jobs share it:
# fuzz/run.sh then adds rounds (up to 3) until the total passes the 1e7 of FUZZ_EXECS.
FUZZ_TIME ?= 60
FUZZ_EXECS ?= 10000000
SOAK_TIME ?= 3600
PKG_CONFIG ?= pkg-config
LUA ?= lua5.4

LUA_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(LUA_PC) 2>/dev/null)
ifeq ($(strip $(LUA_CFLAGS)),)
LUA_CFLAGS := -I/usr/include/$(LUA_PC)
endif
SODIUM_CFLAGS := $(shell $(PKG_CONFIG) --cflags libsodium 2>/dev/null)

WARN := -Wall -Wextra -Werror
# Objects are always position independent: the same objects make the static library and the
# Lua module. Symbols stay visible so luaopen_p2pnet_core is exported.
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=gnu99 $(CFLAGS) $(WARN) -fPIC $(SODIUM_CFLAGS)
ALL_CPPFLAGS := -Icsrc $(CPPFLAGS)
SAN_FLAGS :=
ifneq ($(SANITIZE),)
SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif
# FUZZ=1: coverage instrumentation for libFuzzer in every object, sanitizers too.
ifeq ($(FUZZ),1)
SAN_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=all
endif
ALL_CFLAGS += $(SAN_FLAGS) $(EXTRA_CFLAGS)
LDLIBS := -lsodium

CORE_SRC := $(sort $(wildcard csrc/p2p_*.c) $(wildcard csrc/driver/*.c))
CORE_OBJ := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(CORE_SRC))
BINDING_SRC := $(sort $(wildcard csrc/lua/*.c))
BINDING_OBJ := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(BINDING_SRC))
BINDING := csrc/lua/lp2pnet.c
LIB := $(BUILD)/libp2pnet.a
MODULE := $(BUILD)/p2pnet/core.so

TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

VECTORS := $(CURDIR)/../shared/vectors/noise-25519-chachapoly-blake2b.json

.PHONY: all lib module ctests check-c check-layers format format-check headers luajit fuzzers fuzz-build fuzz fuzz-seeds bench \
        bench-build demo deps test check-rockspec natlab soak clean
.DEFAULT_GOAL := all

all: lib module

lib: $(LIB)
module: $(MODULE)
ctests: $(TEST_BIN)

# Fail loudly instead of building an empty library when the sources are not there yet.
$(LIB): $(CORE_OBJ) | have-core
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $(CORE_OBJ)

$(MODULE): $(BINDING_OBJ) $(CORE_OBJ) | have-core
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(BINDING_OBJ) $(CORE_OBJ) $(SAN_FLAGS) $(LDFLAGS) $(LDLIBS)

.PHONY: have-core
have-core:
	@if [ -z "$(CORE_SRC)" ]; then echo "error: no csrc/p2p_*.c sources" >&2; exit 1; fi

$(BUILD)/obj/lua/%.o: csrc/lua/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) $(LUA_CFLAGS) -MMD -MP -c -o $@ $<

$(BINDING):
	@echo "error: $(BINDING) is missing: the Lua module cannot be built" >&2; exit 1

$(BUILD)/obj/%.o: csrc/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

# Each C test is its own program over the static library.
$(BUILD)/tests/%: tests/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) -Itests $(ALL_CFLAGS) -MMD -MP -o $@ $< $(LIB) $(SAN_FLAGS) $(LDFLAGS) $(LDLIBS)

# Runs every C test of this configuration; test_noise gets the Noise vectors.
check-c: $(TEST_BIN)
	@if [ -z "$(TEST_BIN)" ]; then echo "error: no tests/test_*.c" >&2; exit 1; fi
	@rc=0; for t in $(TEST_BIN); do \
	  case $$t in */test_noise) $$t $(VECTORS) || rc=1 ;; *) $$t || rc=1 ;; esac; \
	done; exit $$rc

# The binding must compile against every Lua the rockspec accepts.
headers: | $(BINDING)
	@for pc in lua5.1 lua5.3 lua5.4 luajit; do \
	  inc=$$($(PKG_CONFIG) --cflags $$pc 2>/dev/null) || inc=; \
	  echo "$(CC) -fsyntax-only $(BINDING_SRC) [$$pc: $$inc]"; \
	  for f in $(BINDING_SRC); do \
	    $(CC) -std=gnu99 $(WARN) -Icsrc $(SODIUM_CFLAGS) $$inc -fsyntax-only $$f || exit 1; \
	  done; \
	done

luajit:
	$(MAKE) BUILD=build-luajit LUA_PC=luajit module

# The core's layers (tests/check-layers.lua): no circle, every arrow looks down, every
# p2p_host_* function in p2p_host.c. It reads the symbols of a finished build's objects.
# tests/check-layers-selftest.sh then plants an upward and a sideways include in a copy of
# csrc/ and checks that both are reported.
check-layers: $(CORE_OBJ) $(BINDING_OBJ)
	$(LUA) tests/check-layers.lua $(BUILD)/obj
	LUA=$(LUA) bash tests/check-layers-selftest.sh $(BUILD)/obj

# Every C file as .clang-format says (clang-format 14, Debian 12's).
FORMAT_SRC = $(sort $(wildcard csrc/*.[ch] csrc/driver/*.[ch] csrc/lua/*.[ch] tests/*.[ch] \
                               fuzz/*.[ch] bench/*.[ch]))
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	@bad=0; for f in $(FORMAT_SRC); do \
	  if ! clang-format --dry-run --Werror $$f >/dev/null 2>&1; then \
	    echo "not formatted: $$f (make format)"; bad=1; fi; \
	done; \
	if [ $$bad = 0 ]; then echo "format-check: $(words $(FORMAT_SRC)) files follow .clang-format"; fi; \
	exit $$bad

# ---- fuzzing -----------------------------------------------------------------------------

FUZZ_HDR := $(wildcard fuzz/*.h)

$(BUILD)/fuzz/%: fuzz/%.c $(FUZZ_HDR) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) $(filter-out -fsanitize=fuzzer-no-link%,$(ALL_CFLAGS)) \
	  -fsanitize=fuzzer,address,undefined -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

# fuzz_mesh_signed.c is fuzz_mesh.c built with the harness signing.
$(BUILD)/fuzz/fuzz_mesh_signed: fuzz/fuzz_mesh.c

fuzzers: $(FUZZ_BIN)
	@if [ -z "$(FUZZ_BIN)" ]; then echo "error: no fuzz/fuzz_*.c" >&2; exit 1; fi

fuzz-build:
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) FUZZ=1 fuzzers

# Each target for FUZZ_TIME seconds, starting from fuzz/seeds/<target>; the corpus grows in
# build-fuzz/corpus/<target> and crashes land in build-fuzz/artifacts/. Prints the executions
# of each target and the total (fuzz/run.sh).
fuzz: deps fuzz-build
	FUZZ_TIME=$(FUZZ_TIME) FUZZ_EXECS=$(FUZZ_EXECS) bash fuzz/run.sh build-fuzz/fuzz

# Rewrites the generated seeds (record kinds signed by the harness, addresses, key files):
# deterministic, so the committed files change only when the generator or the formats do.
$(BUILD)/fuzz-tools/mkseeds: fuzz/mkseeds.c $(FUZZ_HDR) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) -Ifuzz $(ALL_CFLAGS) -o $@ $< $(LIB) $(SAN_FLAGS) $(LDFLAGS) $(LDLIBS)

fuzz-seeds: $(BUILD)/fuzz-tools/mkseeds
	$(BUILD)/fuzz-tools/mkseeds fuzz/seeds

# ---- benchmarks --------------------------------------------------------------------------

BENCH_BIN := $(BUILD)/bench/bench_p2pnet $(BUILD)/bench/bench_enet $(BUILD)/bench/bench_tcp \
             $(BUILD)/bench/bench_mesh $(BUILD)/bench/linkemu

$(BUILD)/bench/bench_p2pnet: bench/bench_p2pnet.c bench/bench_common.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) -Ibench $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

# The simulator's mesh figures: C only, against the library's internal sim header.
$(BUILD)/bench/bench_mesh: bench/bench_mesh.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

$(BUILD)/bench/bench_enet: bench/bench_enet.c bench/bench_common.h
	@mkdir -p $(dir $@)
	$(CC) -Ibench $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) -lenet

$(BUILD)/bench/linkemu: bench/linkemu.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS)

$(BUILD)/bench/bench_tcp: bench/bench_tcp.c bench/bench_common.h
	@mkdir -p $(dir $@)
	$(CC) -Ibench $(ALL_CFLAGS) -o $@ $< $(LDFLAGS)

# -- issue 10, real-kernel link check: bench/link.sh runs bench_link in two network namespaces
# joined by a veth pair with tc rate limiting and iptables random loss (needs root; it says so
# and skips otherwise). `make bench` runs it after the loopback table; `make bench-link` alone.
BENCH_BIN += $(BUILD)/bench/bench_link $(BUILD)/bench/link_delay
$(BUILD)/bench/link_delay: bench/link_delay.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS)
$(BUILD)/bench/bench_link: bench/bench_link.c bench/bench_common.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) -Ibench $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS) -lenet
.PHONY: bench-link
bench-link: deps
	$(MAKE) $(BUILD)/bench/bench_link $(BUILD)/bench/link_delay
	BUILD=$(BUILD) bash bench/link.sh
# -- end issue 10 link check

bench-build: $(BENCH_BIN) $(MODULE)

bench: deps
	$(MAKE) bench-build
	BUILD=$(BUILD) LUA=$(LUA) bash bench/run.sh
	BUILD=$(BUILD) bash bench/link.sh

# ---- running -----------------------------------------------------------------------------

LUA_ENV = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" \
          LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;"

demo: deps
	$(MAKE) all
	@test -f examples/demo.lua || { echo "error: examples/demo.lua is missing" >&2; exit 1; }
	$(LUA_ENV) $(LUA) examples/demo.lua

check-rockspec:
	@bash tests/check-rockspec.sh

# The NAT lab alone: real p2pnet processes behind iptables NATs in network namespaces
# (tests/natlab/lab.sh). `make test` runs it too, with the other specs.
natlab: deps
	$(MAKE) all
	$(LUA_ENV) busted --lua=$(LUA) -o plainTerminal $(sort $(wildcard spec/11-natlab_spec.lua spec/40-traffic_spec.lua spec/4[1-4]-*_spec.lua))

test: deps
	@bash tests/run-all.sh

# The soak test (tests/soak/): real processes on 127.0.0.1 with churn, reliable messages and
# broadcasts, for SOAK_TIME seconds; checks exactly-once in-order delivery and flat memory.
soak: deps
	$(MAKE) all
	$(LUA_ENV) SOAK_TIME=$(SOAK_TIME) $(LUA) tests/soak/soak.lua

# Installs only what is missing, so it costs one dpkg query when everything is there.
DEB_PACKAGES := make gcc libc6-dev pkg-config lua5.4 liblua5.4-dev libsodium-dev luarocks lua-busted lua-socket \
  lua-check libenet-dev clang libclang-rt-14-dev lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev \
  lua5.3 liblua5.3-dev iproute2 util-linux iptables conntrack clang-format \
  luajit2 libluajit2-5.1-dev
# LuaJIT is OpenResty's luajit2 (same `luajit` binary and luajit.pc), not Debian's luajit: the
# nginx Lua module and LÖVE depend on luajit2, and Debian's luajit and libluajit-5.1-dev
# conflict with it, so asking for those would remove nginx's module and LÖVE again.

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    s=$$(dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null); \
	    case "$$s" in ii*) ;; *) echo $$p ;; esac; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing" $$missing; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && \
	  $$SUDO apt-get install -y -q $$missing; \
	fi

# Each host and port (OpenResty, LÖVE, the event loops, Windows, packaging) keeps its targets
# and its Debian packages (`DEB_PACKAGES += ...`) in its own fragment under mk/.
include $(sort $(wildcard mk/*.mk))

clean:
	rm -rf build build-clang build-asan build-luajit build-fuzz build-bench

-include $(wildcard $(BUILD)/obj/*.d $(BUILD)/obj/*/*.d $(BUILD)/tests/*.d)
