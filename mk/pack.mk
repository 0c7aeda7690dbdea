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

DEB_PACKAGES += lua-ldoc git zip unzip

.PHONY: rockspec rock doc
rockspec:
	$(LUA) rockspec/versioned.lua $(P2P_VERSION) < rockspec/p2pnet-scm-1.rockspec > $(ROCKSPEC_RELEASE)

rock:
	@bash tests/check-rockspec.sh >/dev/null || { bash tests/check-rockspec.sh; exit 1; }
	bash rockspec/pack.sh $(ROCK_DIR)

doc:
	@rm -rf $(DOC_DIR)
	ldoc -d $(DOC_DIR) .
	@test -f $(DOC_DIR)/index.html
	@echo "the reference: $(DOC_DIR)/index.html"
