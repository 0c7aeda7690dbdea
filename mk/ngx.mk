# OpenResty / nginx (issue 11): p2pnet.ngx, examples/openresty, spec/30-openresty_spec.lua.
# See docs/OPENRESTY.md.
#
#   make ngx-test      only the nginx spec (builds the LuaJIT module it loads into nginx)
#   make ngx-example   runs examples/openresty in the foreground on 127.0.0.1:8080 (Ctrl-C stops)
#
# Debian's nginx with its Lua module (lua-nginx-module 0.10.23, built on luajit2; lua-resty-core
# comes with it). The module for nginx is the LuaJIT build (build-luajit, against luajit2's
# libluajit2-5.1-dev, which the main Makefile asks for).
DEB_PACKAGES += nginx libnginx-mod-http-lua
# csrc/lua/ngx_waker.c starts a thread (in libc since glibc 2.34; older ones need the flag).
LDLIBS += -pthread

.PHONY: ngx-test ngx-example
ngx-test: deps
	$(MAKE) all
	$(MAKE) BUILD=build-luajit LUA_PC=luajit module
	$(LUA_ENV) busted --lua=$(LUA) -o plainTerminal spec/30-openresty_spec.lua

ngx-example: deps
	$(MAKE) BUILD=build-luajit LUA_PC=luajit module
	bash examples/openresty/run.sh
