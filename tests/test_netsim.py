"""
Two L{TCPControlBlock}s talking through a simulated link (smoltcp's
C{netsim}, mirage's C{vnetif} backends): one opened with C{connect()}, the
other built from the SYN with C{fromSYN()} and C{accept()}.  The link
loses, duplicates, delays and reorders segments under a seeded
C{random.Random}; time is an explicit number advanced to the next event.

Every segment goes through L{emitTCP} and L{parseTCP}, so what the control
blocks emit is checked to be a valid segment too.  After every event the
control block is asked when it next wants to run: never at or before the
current time (the Twisted glue would spin).
"""

import heapq
import random

from twisted.trial.unittest import SynchronousTestCase

from vpnkit.protocols.tcp.state import State, TCPConfig, TCPControlBlock
from vpnkit.wire.tcp import ACK, SYN, emitTCP, parseTCP

A_IP = bytes((10, 0, 0, 1))
B_IP = bytes((10, 0, 0, 2))
MiB = 1 << 20


class SimulatedLink:
    """
    A lossy, duplicating, reordering link between two ends, "a" and "b".

    @ivar sent: segments handed to the link; C{lost}, C{duplicated}: what
        became of some of them.
    """

    def __init__(self, rng, loss=0.0, duplicate=0.0, reorder=0.0, delay=0.001, jitter=0.01):
        self.rng = rng
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.delay = delay
        self.jitter = jitter
        self._queue = []
        self._count = 0
        self.sent = self.lost = self.duplicated = 0

    def transmit(self, now, source, segments):
        src, dst = (A_IP, B_IP) if source == "a" else (B_IP, A_IP)
        for seg in segments:
            self.sent += 1
            if self.rng.random() < self.loss:
                self.lost += 1
                continue
            copies = 1
            if self.rng.random() < self.duplicate:
                copies = 2
                self.duplicated += 1
            for _ in range(copies):
                delay = self.delay
                if self.rng.random() < self.reorder:
                    delay += self.rng.random() * self.jitter
                self._count += 1
                heapq.heappush(
                    self._queue, (now + delay, self._count, source, emitTCP(seg, src, dst))
                )

    def nextTime(self):
        return self._queue[0][0] if self._queue else None

    def deliverable(self, now):
        """
        Pop every segment due by C{now}, as C{(source, Segment)}.
        """
        while self._queue and self._queue[0][0] <= now:
            _, _, source, data = heapq.heappop(self._queue)
            src, dst = (A_IP, B_IP) if source == "a" else (B_IP, A_IP)
            yield source, parseTCP(data, src, dst)


class Application:
    """
    One end's application: writes C{data} in chunks while the send queue
    is short, closes once everything is written, and reads what arrives
    (every C{readEvery} seconds, or at once).
    """

    def __init__(self, data, readEvery=None, queueLimit=256 * 1024, chunk=64 * 1024):
        self.data = data
        self.written = 0
        self.received = bytearray()
        self.readEvery = readEvery
        self.nextRead = 0.0
        self.queueLimit = queueLimit
        self.chunk = chunk

    def run(self, tcb, now):
        if self.written < len(self.data) and tcb.canSend and tcb.sendQueue < self.queueLimit:
            piece = self.data[self.written : self.written + self.chunk]
            self.written += tcb.send(piece)
        if (
            self.written == len(self.data)
            and tcb.state in (State.ESTABLISHED, State.CLOSE_WAIT)
            and tcb.canSend
        ):
            tcb.close()
        if self.readEvery is None or now >= self.nextRead:
            self.received += tcb.recv()
            if self.readEvery is not None:
                self.nextRead = now + self.readEvery

    def wakeup(self, tcb):
        """
        When this application next wants to run by itself (a read tick),
        or None.
        """
        if self.readEvery is None or tcb is None or (tcb.state is State.CLOSED):
            return None
        return self.nextRead


class Simulation:
    """
    Run a connection from "a" (active) to "b" (passive) until both ends are
    closed, or C{limit} simulated seconds.
    """

    def __init__(self, testCase, link, appA, appB, config, rng, acceptDelay=0.005):
        self.testCase = testCase
        self.link = link
        self.apps = {"a": appA, "b": appB}
        self.config = config
        self.rng = rng
        self.acceptDelay = acceptDelay
        self.tcbs = {"a": None, "b": None}
        self.acceptAt = None
        self.now = 0.0
        self.finishedAt = None

    def checkPoll(self, name):
        tcb = self.tcbs[name]
        at = tcb.pollAt(self.now)
        if at is not None and at <= self.now:
            self.testCase.fail(f"{name} in {tcb.state} wants to run at {at}, now is {self.now}")

    def run(self, limit):
        tcb, out = TCPControlBlock.connect(
            40000, 80, self.rng.getrandbits(32), self.now, self.config
        )
        self.tcbs["a"] = tcb
        self.link.transmit(self.now, "a", out)
        while True:
            times = [self.link.nextTime(), self.acceptAt]
            for name, tcb in self.tcbs.items():
                if tcb is not None:
                    times.append(tcb.pollAt(self.now))
                    times.append(self.apps[name].wakeup(tcb))
            times = [t for t in times if t is not None]
            if not times:
                break
            self.now = max(self.now, min(times))
            if self.now > limit:
                self.testCase.fail(
                    f"not finished after {limit} s: "
                    + ", ".join(
                        f"{name} {tcb.state if tcb else None} "
                        f"received {len(self.apps[name].received)}"
                        for name, tcb in self.tcbs.items()
                    )
                )
            self.step()
            if self.finishedAt is None and all(
                t is not None and t.state in (State.CLOSED, State.TIME_WAIT)
                for t in self.tcbs.values()
            ):
                self.finishedAt = self.now

    def step(self):
        now = self.now
        for source, seg in self.link.deliverable(now):
            target = "b" if source == "a" else "a"
            tcb = self.tcbs[target]
            if tcb is None:
                # The passive end: a SYN creates it; the "host connection"
                # is ready acceptDelay later.
                if seg.flags & (SYN | ACK) == SYN:
                    self.tcbs["b"] = TCPControlBlock.fromSYN(
                        seg, self.rng.getrandbits(32), self.config
                    )
                    self.acceptAt = now + self.acceptDelay
                continue
            self.link.transmit(now, target, tcb.segmentReceived(seg, now))
            if tcb.pollAt(now) == now:
                self.link.transmit(now, target, tcb.dispatch(now))
            self.checkPoll(target)
        if self.acceptAt is not None and now >= self.acceptAt:
            self.acceptAt = None
            self.link.transmit(now, "b", self.tcbs["b"].accept(now))
            self.checkPoll("b")
        for name, tcb in self.tcbs.items():
            if tcb is None:
                continue
            self.apps[name].run(tcb, now)
            at = tcb.pollAt(now)
            if at is not None and at <= now:
                self.link.transmit(now, name, tcb.dispatch(now))
            self.checkPoll(name)


class NetsimTests(SynchronousTestCase):
    # A TIME-WAIT long enough that, at 10% loss, a FIN retransmitted late
    # still finds its connection (the default 2 s is short by design).
    config = TCPConfig(timeWait=30.0)

    def transfer(
        self, seed, loss, duplicate=0.01, reorder=0.05, size=MiB, limit=300.0, config=None, **kw
    ):
        """
        C{size} random bytes each way over a link with the given faults;
        assert exact delivery and a clean close on both ends.

        @return: the L{Simulation}.
        """
        rng = random.Random(seed)
        link = SimulatedLink(rng, loss=loss, duplicate=duplicate, reorder=reorder)
        dataA = rng.randbytes(size)
        dataB = rng.randbytes(size)
        appA = Application(dataA, **kw)
        appB = Application(dataB, **kw)
        sim = Simulation(self, link, appA, appB, config or self.config, rng)
        sim.run(limit)
        a, b = sim.tcbs["a"], sim.tcbs["b"]
        self.assertEqual(len(appB.received), len(dataA))
        self.assertTrue(appB.received == dataA, "a -> b corrupted")
        self.assertTrue(appA.received == dataB, "b -> a corrupted")
        self.assertEqual((a.state, a.error), (State.CLOSED, None))
        self.assertEqual((b.state, b.error), (State.CLOSED, None))
        self.assertIsNotNone(sim.finishedAt)
        return sim

    def test_perfectLink(self):
        """
        1 MiB each way over a clean link: no retransmission at all, done in
        well under a simulated second.
        """
        sim = self.transfer(1, loss=0.0, duplicate=0.0, reorder=0.0)
        self.assertEqual(sim.tcbs["a"].retransmits + sim.tcbs["b"].retransmits, 0)
        self.assertLess(sim.finishedAt, 1.0)

    def test_noLoss(self):
        """
        1 MiB each way with duplication and reordering but no loss.
        """
        for seed in (1, 2):
            sim = self.transfer(seed, loss=0.0)
            self.assertLess(sim.finishedAt, 5.0)

    def test_threePercentLoss(self):
        """
        1 MiB each way losing 3% of segments, three seeds.
        """
        for seed in (1, 2, 3):
            sim = self.transfer(seed, loss=0.03)
            self.assertGreater(sim.link.lost, 0)
            self.assertLess(sim.finishedAt, 30.0)

    def test_tenPercentLoss(self):
        """
        1 MiB each way losing 10% of segments, three seeds.
        """
        for seed in (1, 2, 3):
            sim = self.transfer(seed, loss=0.10)
            self.assertGreater(sim.tcbs["a"].retransmits, 0)
            self.assertLess(sim.finishedAt, 120.0)

    def test_slowReaderZeroWindows(self):
        """
        Applications that read only every 50 ms through a 4 KiB buffer:
        windows close and reopen all the time (zero-window probes, window
        updates), with loss; everything still arrives.
        """
        config = TCPConfig(mss=1000, receiveBuffer=4096, timeWait=30.0)
        for seed in (1, 2):
            self.transfer(
                seed, loss=0.03, size=64 * 1024, readEvery=0.05, config=config, limit=600.0
            )

    def test_smallMSSNoScaling(self):
        """
        An MSS of 536 and a 64 KiB buffer (no window scaling needed), with
        loss and heavy reordering.
        """
        config = TCPConfig(mss=536, receiveBuffer=65535, timeWait=30.0)
        for seed in (4, 5):
            self.transfer(seed, loss=0.05, reorder=0.3, size=256 * 1024, config=config)
