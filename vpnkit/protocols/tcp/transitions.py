# -*- test-case-name: tests.test_tcp_state -*-
"""
The states of a TCP connection (RFC 9293 3.3.2), the one table of every
change between them, and the sets of states the control block
(L{vpnkit.protocols.tcp.state}) asks about several times a segment.
"""

import enum

__all__ = [
    "State",
    "S",
    "TRANSITIONS",
    "SYNCHRONIZED",
    "RECEIVING",
    "SENDABLE",
    "WRITABLE",
    "FIN_STATES",
]


class State(enum.Enum):
    CLOSED = "CLOSED"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    # Members are singletons compared by identity: hash them so too, in C,
    # rather than by Enum's Python-level hash of the name (the state sets
    # and TRANSITIONS are looked up several times per segment).
    __hash__ = object.__hash__

    def __str__(self):
        return self.value


S = State

# Every state change, in one place, applied only by _transition: (state,
# event) -> new state.  Events: "open" (active), "synReceived" (passive or
# simultaneous open), "synAcked" (handshake done), "close" (the application
# will send no more), "finAcked" (our FIN), "finReceived" (theirs, in
# order), "timeWaitExpired", "refused" (RST for our SYN), and from any
# state "reset" (their RST), "timeout" (given up), "aborted" (our RST).  A
# close in SYN-RECEIVED waits for the handshake (RFC 9293 3.10.4).
TRANSITIONS = {
    (S.CLOSED, "open"): S.SYN_SENT,
    (S.CLOSED, "synReceived"): S.SYN_RECEIVED,
    (S.SYN_SENT, "synReceived"): S.SYN_RECEIVED,
    (S.SYN_SENT, "synAcked"): S.ESTABLISHED,
    (S.SYN_RECEIVED, "synAcked"): S.ESTABLISHED,
    (S.SYN_SENT, "close"): S.CLOSED,
    (S.ESTABLISHED, "close"): S.FIN_WAIT_1,
    (S.CLOSE_WAIT, "close"): S.LAST_ACK,
    (S.FIN_WAIT_1, "finAcked"): S.FIN_WAIT_2,
    (S.CLOSING, "finAcked"): S.TIME_WAIT,
    (S.LAST_ACK, "finAcked"): S.CLOSED,
    (S.ESTABLISHED, "finReceived"): S.CLOSE_WAIT,
    (S.FIN_WAIT_1, "finReceived"): S.CLOSING,
    (S.FIN_WAIT_2, "finReceived"): S.TIME_WAIT,
    (S.TIME_WAIT, "timeWaitExpired"): S.CLOSED,
    (S.SYN_SENT, "refused"): S.CLOSED,
    **{(s, e): S.CLOSED for s in S if s is not S.CLOSED for e in ("reset", "timeout", "aborted")},
}

SYNCHRONIZED = frozenset(S) - {S.CLOSED, S.SYN_SENT, S.SYN_RECEIVED}  # handshake done
# States in which data from the guest is still accepted.
RECEIVING = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})
# States in which queued data (and then our FIN) may still be sent.
SENDABLE = frozenset({S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.LAST_ACK, S.CLOSING})
# States in which the application may still write.
WRITABLE = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT})
# States in which our FIN is due once the queue drains.
FIN_STATES = frozenset({S.FIN_WAIT_1, S.LAST_ACK, S.CLOSING})
