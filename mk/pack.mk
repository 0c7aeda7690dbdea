# Packaging and the reference (issue 11): make rockspec, make rock, make doc.
#
#   make rockspec   writes rockspec/p2pnet-<version>-1.rockspec from the scm rockspec (only
#                   `version` and the source tag differ; tests/check-rockspec.sh checks it)
#   make rock       packs p2pnet-<version>-1.src.rock with `luarocks pack` into ROCK_DIR (.)
#   make doc        the ldoc reference of the Lua interface into DOC_DIR (build/doc)
# <version> is P2P_VERSION_STRING of csrc/p2pnet.h.
P2P_VERSION := $(shell sed -n 's/^\#define P2P_VERSION_STRING "\(.*\)"$$/\1/p' csrc/p2pnet.h)
ROCKSPEC_RELEASE := rockspec/p2pnet-$(P2P_VERSION)-1.rockspec
ROCK_DIR ?= .
DOC_DIR ?= build/doc
DOC_ABS = $(abspath $(DOC_DIR))

DEB_PACKAGES += lua-ldoc git zip unzip

.PHONY: rockspec rock doc
rockspec:
	$(LUA) rockspec/versioned.lua $(P2P_VERSION) < rockspec/p2pnet-scm-1.rockspec > $(ROCKSPEC_RELEASE)

rock:
	@bash tests/check-rockspec.sh >/dev/null || { bash tests/check-rockspec.sh; exit 1; }
	bash rockspec/pack.sh $(ROCK_DIR)

# config.ld names the files of the module p2pnet. Other modules of the package that carry
# their own ldoc comments (a `-- @module p2pnet.<name>` line, as the event-loop adapters do)
# join the reference as pages of their own: make doc adds them to a copy of config.ld, with
# absolute paths since ldoc reads a config's paths from the config's directory.
DOC_MODULES = $(shell grep -l '^-- *@module p2pnet\.' lua/p2pnet/*.lua 2>/dev/null)

doc:
	@rm -rf $(DOC_ABS) $(DOC_ABS).ld
	@mkdir -p $(dir $(DOC_ABS))
	sed -e 's,^\( *\)"\(csrc\|lua\)/,\1"$(CURDIR)/\2/,' \
	    -e 's|^file = {|file = {$(foreach f,$(DOC_MODULES), "$(CURDIR)/$(f)",)|' \
	    config.ld > $(DOC_ABS).ld
	ldoc -c $(DOC_ABS).ld -d $(DOC_ABS) .
	@rm -f $(DOC_ABS).ld
	@test -f $(DOC_ABS)/index.html
	@echo "the reference: $(DOC_DIR)/index.html"
