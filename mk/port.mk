# mk/port.mk - portability (docs/PORTING.md): the UDP driver's build-time feature probes, a
# static libsodium, and the Windows module (mingw-w64) with its loopback run under wine.
#
#   make                          probes into $(BUILD)/config.h (HAVE_RECVMMSG, ...) first
#   make BUILD=build-posix PORT_PROBES=0 all ctests
#                                 the Linux extensions' probes off: the plain POSIX driver
#                                 (recvfrom/sendto, poll, fcntl, no offload), as on BSD/macOS
#   make SODIUM_STATIC=1          links libsodium.a into the module and the programs
#   make windows                  build-win/p2pnet/core.dll, lua.exe and lua54.dll (the
#                                 cross-built libsodium and Lua are kept in build-win/deps)
#   make windows-test             the above, then tests/win/loopback.lua under wine
#   make clean-port               removes build-posix, build-static and build-win except
#                                 build-win/deps (the cross-built libsodium and Lua)

DEB_PACKAGES += gcc-mingw-w64-x86-64 wine64 wine dpkg-dev autoconf automake libtool

# ---- feature probes ------------------------------------------------------------------------
PORT_PROBES ?= 1
# The probes rerun when the compiler or PORT_PROBES changes: the stamp's name holds both.
port_empty :=
port_space := $(port_empty) $(port_empty)
PORT_STAMP = $(BUILD)/port/probes-$(PORT_PROBES)-$(subst $(port_space),_,$(subst /,_,$(CC)))

$(BUILD)/port/probes-%:
	@mkdir -p $(dir $@)
	@rm -f $(dir $@)probes-*
	@touch $@

$(BUILD)/config.h: $(PORT_STAMP) mk/port.mk mk/port-config.sh
	sh mk/port-config.sh $@ "$(CC)" $(PORT_PROBES) $(filter-out -Werror,$(ALL_CFLAGS))
	@touch $@

$(BUILD)/obj/driver/udp.o: $(BUILD)/config.h
$(BUILD)/obj/driver/udp.o: ALL_CPPFLAGS += -I$(BUILD) -DP2P_HAVE_CONFIG_H

# ---- static libsodium ----------------------------------------------------------------------
# Debian's libsodium.a is position-independent code built as for an executable (-fPIE): it
# reaches its own global symbols with PC-relative relocations, which a shared object may not
# use for symbols it exports ("relocation R_X86_64_PC32 against symbol
# `randombytes_sysrandom_implementation' can not be used when making a shared object").
# --exclude-libs keeps every libsodium symbol inside the module, which makes those references
# local: the module links without text relocations, exports no sodium_* symbol (so it cannot
# clash with another libsodium in the same process) and needs no libsodium.so at run time.
SODIUM_STATIC ?= 0
SODIUM_A ?= $(shell $(PKG_CONFIG) --variable=libdir libsodium 2>/dev/null)/libsodium.a
ifeq ($(SODIUM_STATIC),1)
LDLIBS := $(filter-out -lsodium,$(LDLIBS)) $(SODIUM_A) -Wl,--exclude-libs,$(notdir $(SODIUM_A))
endif
# What links libsodium relinks when SODIUM_STATIC changes (the stamp's name holds it), so that
# `make SODIUM_STATIC=1` after `make` gives the static module rather than "up to date"; and
# with SODIUM_STATIC=1, when libsodium.a itself is newer.
SODIUM_STAMP = $(BUILD)/port/sodium-$(SODIUM_STATIC)
$(BUILD)/port/sodium-%:
	@mkdir -p $(dir $@)
	@rm -f $(dir $@)sodium-*
	@touch $@
$(MODULE) $(TEST_BIN): $(SODIUM_STAMP)
ifeq ($(SODIUM_STATIC),1)
$(MODULE) $(TEST_BIN): $(wildcard $(SODIUM_A))
endif

# ---- Windows -------------------------------------------------------------------------------
WIN_BUILD ?= build-win
WIN_HOST ?= x86_64-w64-mingw32
WIN_CC ?= $(WIN_HOST)-gcc
WIN_DEPS = $(WIN_BUILD)/deps
WIN_LIBS = -L$(WIN_DEPS)/sodium/lib -L$(WIN_DEPS)/lua/lib -lsodium -llua54 -lws2_32 -liphlpapi -static-libgcc

.PHONY: windows windows-deps windows-test
windows-deps:
	WIN_HOST=$(WIN_HOST) WIN_CC=$(WIN_CC) bash tests/win/deps.sh $(WIN_DEPS)

# The objects come from the Makefile's own rules, with the cross compiler and the cross-built
# headers; libsodium is static (SODIUM_STATIC tells its header not to expect a DLL).
windows: windows-deps
	$(MAKE) BUILD=$(WIN_BUILD) CC=$(WIN_CC) PKG_CONFIG=false \
	  LUA_CFLAGS="-I$(WIN_DEPS)/lua/include" \
	  SODIUM_CFLAGS="-I$(WIN_DEPS)/sodium/include -DSODIUM_STATIC" \
	  EXTRA_CFLAGS="-D_WIN32_WINNT=0x0601" $(WIN_BUILD)/p2pnet/core.dll
	@mkdir -p $(WIN_BUILD)/run/p2pnet
	cp $(WIN_DEPS)/lua/bin/lua.exe $(WIN_DEPS)/lua/bin/lua54.dll $(WIN_BUILD)/run/
	cp $(WIN_BUILD)/p2pnet/core.dll $(WIN_BUILD)/run/p2pnet/

# Exported: luaopen_p2pnet_core (mingw exports every global symbol of the module's own objects;
# the static libraries' symbols stay inside).
$(BUILD)/p2pnet/core.dll: $(BINDING_OBJ) $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(BINDING_OBJ) $(CORE_OBJ) -Wl,--exclude-libs,ALL $(LDFLAGS) $(WIN_LIBS)

windows-test: windows
	WIN_BUILD=$(WIN_BUILD) bash tests/win/run.sh tests/win/loopback.lua

.PHONY: clean-port
clean-port:
	rm -rf build-posix build-static $(WIN_BUILD)/obj $(WIN_BUILD)/p2pnet $(WIN_BUILD)/run \
	  $(WIN_BUILD)/port $(WIN_BUILD)/config.h $(WIN_BUILD)/wineprefix
