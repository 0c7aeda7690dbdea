# LÖVE (issue 11): examples/love, spec/32-love_spec.lua. See docs/LOVE.md.
#
#   make love-test   only the LÖVE spec (it builds the LuaJIT module the game loads)
#   make love-demo   two headless players on 127.0.0.1 play, chat, and print what they saw
#                    and the frame cost of poll(0) (examples/love/demo.sh)
#
# Debian's love 11 runs on luajit2 (the main Makefile asks for luajit2, never Debian's luajit,
# which would remove love). zip packs the .love archive the spec ships the game in. With a
# window and no X server (the spec's windowed player), SDL's offscreen driver gets OpenGL
# from Mesa through EGL: libegl-mesa0 and libgl1-mesa-dri.
DEB_PACKAGES += love zip libegl-mesa0 libgl1-mesa-dri

.PHONY: love-test love-demo
love-test: deps
	$(MAKE) all
	$(MAKE) BUILD=build-luajit LUA_PC=luajit module
	$(LUA_ENV) busted --lua=$(LUA) -o plainTerminal spec/32-love_spec.lua

love-demo: deps
	$(MAKE) BUILD=build-luajit LUA_PC=luajit module
	bash examples/love/demo.sh
