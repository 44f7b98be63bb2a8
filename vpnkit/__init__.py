"""
vpnkit: a user-mode network stack for virtual machines and network namespaces.

A guest's Ethernet frames arrive over a link (a vmnet or QEMU socket, or a tap
device in a network namespace); vpnkit answers ARP, DHCP, ICMP, UDP and TCP in
userspace and turns each guest flow into an ordinary host socket.  See
``docs/architecture.md``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
