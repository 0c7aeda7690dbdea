# Port mapping and STUN (issue 12, package P2): the NAT lab's daemons and command-line clients
# (tests/natlab/lab.sh modes upnp and mixed; spec/41-natlab12_spec.lua).
#
#   make natlab12    only the issue 12 NAT lab scenarios (root, network namespaces)
#
# miniupnpd-iptables (not -nftables: it conflicts) works on the legacy x_tables, which lab.sh
# uses on the upnp mode's routers; coturn is run by hand (its Debian service stays stopped).
DEB_PACKAGES += miniupnpd miniupnpd-iptables miniupnpc natpmpc coturn stun-client

.PHONY: natlab12
natlab12: deps
	$(MAKE) all
	$(LUA_ENV) busted --lua=$(LUA) -o plainTerminal spec/41-natlab12_spec.lua
