"""
vpnkit's seams to the operating system: the real objects behind the
interfaces the stack is built on, each with an in-memory fake in C{tests/}.

 - C{tundev}: tap devices created inside Linux network namespaces
   (L{vpnkit.interfaces.ITunSystem}); C{taplink}: a tap's descriptor as a
   guest link.
 - C{sockets}: host UDP and ping sockets with the kernel's ICMP errors
   (C{IP_RECVERR}), for the UDP NAT, the ICMP proxy and upstream DNS.
 - C{network}: outbound host TCP connections
   (L{vpnkit.interfaces.IHostNetwork}); C{proxy}: the two ends of a proxied
   TCP connection, host socket and guest connection.
 - C{resolvers}: DNS answers from the host's own resolver.
"""
