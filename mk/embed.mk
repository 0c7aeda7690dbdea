# mk/embed.mk - embedding p2pnet in a C program that hosts its own Lua (examples/embed/).
#
#   make static    $(BUILD)/libp2pnet-lua.a (the Lua binding and the core, for static linking
#                  into an engine; $(BUILD)/libp2pnet.a is the core alone) and the example
#                  program $(BUILD)/examples/embed/embed
#
# For LuaJIT / Lua 5.1 engines: make BUILD=build-luajit LUA_PC=luajit static
# The program runs a script: $(BUILD)/examples/embed/embed [--preload] lua examples/embed/game.lua

.PHONY: static
EMBED_LIB := $(BUILD)/libp2pnet-lua.a
EMBED_BIN := $(BUILD)/examples/embed/embed
LUA_LIBS := $(shell $(PKG_CONFIG) --libs $(LUA_PC) 2>/dev/null)
ifeq ($(strip $(LUA_LIBS)),)
LUA_LIBS := -l$(LUA_PC)
endif

static: $(EMBED_LIB) $(EMBED_BIN)

$(EMBED_LIB): $(BINDING_OBJ) $(CORE_OBJ) | have-core
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $(BINDING_OBJ) $(CORE_OBJ)

$(EMBED_BIN): examples/embed/main.c $(EMBED_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) $(LUA_CFLAGS) -o $@ $< $(EMBED_LIB) $(SAN_FLAGS) \
	  $(LDFLAGS) $(LUA_LIBS) $(LDLIBS) -lm

# The event-loop adapters' spec (spec/31-loops_spec.lua) runs them on Debian's libraries;
# lua-copas is packaged for Lua 5.1/5.2 only, so its part runs under LuaJIT (luajit2, above).
DEB_PACKAGES += lua-luv lua-cqueues lua-copas lua-coxpcall
