"""
vpnkit's seams to the operating system: tap devices in network namespaces,
and (later) host sockets.
"""
