rockspec_format = "3.0"
package = "p2pnet"
version = "scm-1"

source = {
   url = "git+https://github.com/p2pnet/p2pnet.git",
}

description = {
   summary = "Peer-to-peer networking for Lua: encrypted, reliable messages over UDP",
   detailed = [[
p2pnet connects Lua programs directly over UDP. Sessions are authenticated and encrypted
with a Noise handshake (XXpsk3, X25519, ChaCha20-Poly1305, BLAKE2b); messages are reliable,
ordered and delivered exactly once, with optional receipts carrying the remote handler's
reply. The protocol core is a sans-IO C library; a deterministic simulator drives it on
virtual time for tests.
]],
   license = "MIT",
}

dependencies = {
   "lua >= 5.1, < 5.5",
}

external_dependencies = {
   SODIUM = {
      header = "sodium.h",
      library = "sodium",
   },
}

build = {
   type = "builtin",
   modules = {
      ["p2pnet"] = "lua/p2pnet/init.lua",
      ["p2pnet.transfer"] = "lua/p2pnet/transfer.lua", -- streaming transfers
      ["p2pnet.loop"] = "lua/p2pnet/loop.lua", -- event-loop adapters (issue 11): shared pieces
      ["p2pnet.luv"] = "lua/p2pnet/luv.lua", -- libuv (luv)
      ["p2pnet.cqueues"] = "lua/p2pnet/cqueues.lua", -- cqueues
      ["p2pnet.copas"] = "lua/p2pnet/copas.lua", -- copas
      ["p2pnet.socket"] = "lua/p2pnet/socket.lua", -- LuaSocket's socket.select
      ["p2pnet.ngx"] = "lua/p2pnet/ngx.lua", -- OpenResty / nginx (docs/OPENRESTY.md)
      ["p2pnet.core"] = {
         -- Every csrc/p2p_*.c, csrc/driver/*.c and csrc/lua/*.c file, exactly: `make check-rockspec` (part of `make test`)
         -- fails when this list and the directory disagree.
         sources = {
            "csrc/driver/sim.c",
            "csrc/driver/sim_gw.c", -- issue 12: the simulator's gateway and STUN server
            "csrc/driver/stream.c", -- issue 12: TCP and WebSocket relays
            "csrc/driver/udp.c",
            "csrc/driver/udp_win.c", -- Winsock; empty except on Windows (docs/PORTING.md)
            "csrc/lua/lp2pnet.c",
            "csrc/lua/events.c",
            "csrc/lua/identity.c",
            "csrc/lua/ngx_waker.c",
            "csrc/lua/node.c",
            "csrc/lua/peer.c",
            "csrc/lua/sim.c",
            "csrc/lua/transfer.c",
            "csrc/lua/util.c",
            "csrc/p2p_addr.c",
            "csrc/p2p_crypto.c",
            "csrc/p2p_guard.c",
            "csrc/p2p_handshake.c",
            "csrc/p2p_host.c",
            "csrc/p2p_identity.c",
            "csrc/p2p_index.c",
            "csrc/p2p_keys.c",
            "csrc/p2p_mesh.c",
            "csrc/p2p_nat.c",
            "csrc/p2p_noise.c",
            "csrc/p2p_path.c",
            "csrc/p2p_peer.c",
            "csrc/p2p_ranges.c",
            "csrc/p2p_reliable.c",
            "csrc/p2p_cc.c", -- issue 10 (congestion control)
            "csrc/p2p_state.c",
            "csrc/p2p_transfer.c",
            "csrc/p2p_wire.c",
            -- issue 12 (reach every peer): codecs and modules
            "csrc/p2p_stun.c",
            "csrc/p2p_pmp.c",
            "csrc/p2p_upnp.c",
            "csrc/p2p_lan.c",
            "csrc/p2p_portmap.c",
            "csrc/p2p_probe.c",
         },
         incdirs = { "csrc", "$(SODIUM_INCDIR)" },
         libdirs = { "$(SODIUM_LIBDIR)" },
         libraries = { "sodium" },
      },
   },
   -- Installed beside the rock (`luarocks show --rock-dir p2pnet` gives the path):
   -- the reference and guides, and the example programs.
   copy_directories = { "docs", "examples" },
   platforms = {
      -- Windows (mingw-w64): Winsock and the interface list (driver/udp_win.c). With a static
      -- libsodium, also add SODIUM_STATIC to the defines (docs/PORTING.md).
      windows = {
         modules = {
            ["p2pnet.core"] = {
               libraries = { "sodium", "ws2_32", "iphlpapi" },
            },
         },
      },
   },
   install = {
      -- The command line: `p2pnet keygen FILE`, `p2pnet id FILE`, `p2pnet mediator ...`.
      bin = {
         p2pnet = "bin/p2pnet",
      },
   },
}
