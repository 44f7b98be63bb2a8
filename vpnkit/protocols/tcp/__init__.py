"""
TCP, terminated in userspace: a sans-I/O control block (L{state}), its
buffers and timers, the Twisted glue that presents a connection as a
transport (L{connection}), and the layer that demultiplexes segments and
dials the host before accepting a guest's SYN (L{forwarder}).
"""
