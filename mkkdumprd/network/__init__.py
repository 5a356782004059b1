"""The capture kernel's network: how the host reaches a remote dump target, as data.

Everything is read through a Host from /proc/net and /sys/class/net, so tests use fake
trees. Sources (why these and not others):

* routes: /proc/net/route (IPv4 main table) and /proc/net/ipv6_route: the same tables
  `ip route get` consults, minus policy routing (only the main table is visible there);
* IPv4 addresses: they are not in sysfs. /proc/net/fib_trie lists every local address
  (`/32 host LOCAL` leaves) but not its device; /proc/net/route lists each address's
  connected prefix route *with* its device. A local address inside a connected prefix of the
  outgoing device is that device's address, and the prefix route's mask is its netmask;
* IPv6 addresses: /proc/net/if_inet6 (address, prefix length, scope, flags, device);
* device stacks: /sys/class/net/X/{bonding/slaves,brif/,lower_*}, /proc/net/vlan/config.

Modules: route (route lookup), interfaces (device stack, drivers, MACs), addresses (the
outgoing address), resolve (target host → address), ipconfig (dracut `ip=` syntax),
plan (all of it together), nfs_options, ssh_command.
"""
