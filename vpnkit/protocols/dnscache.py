# -*- test-case-name: tests.test_dnscache -*-
"""
The upstream answer cache: L{AnswerCache}.

Successful answers are kept per question, each for the smallest TTL among
its answer records, and served with every TTL counted down by the whole
seconds since they were stored.  Answers without records, or whose
smallest TTL is 0, are not kept.

The cache is bounded: at most L{MAX_ENTRIES} (1,024) questions.  Storing
one more evicts the question stored longest ago; reading an entry does not
make it younger (this is not an LRU cache), storing it again does.
Expired entries are dropped when they are next asked for.

Time is passed in (C{now}, in seconds), so the cache never reads a clock.
Keys are whatever the caller uses to name a question (the upstream
resolver uses C{(name, type, class)} with the name normalised).
"""

from collections import OrderedDict

from twisted.names import dns

__all__ = ["AnswerCache", "MAX_ENTRIES"]

MAX_ENTRIES = 1024


class AnswerCache:
    """
    Successful answers by question, each kept for the smallest TTL among
    its answer records and served with the TTLs counted down.

    @ivar maxEntries: how many questions it keeps at most.
    """

    def __init__(self, maxEntries=MAX_ENTRIES):
        self.maxEntries = maxEntries
        self._entries = OrderedDict()

    def __len__(self):
        return len(self._entries)

    def clear(self):
        """
        Forget every answer.
        """
        self._entries.clear()

    def put(self, key, result, now):
        """
        Keep C{result} (C{(answers, authority, additional)}) for C{key},
        stored at C{now}, if it has answers whose TTLs are all positive;
        evict the oldest entries to stay within the bound.
        """
        answers = result[0]
        if not answers:
            return
        ttl = min(r.ttl for r in answers)
        if ttl <= 0:
            return
        self._entries.pop(key, None)
        while len(self._entries) >= self.maxEntries:
            self._entries.popitem(last=False)
        self._entries[key] = (now, now + ttl, result)

    def get(self, key, now):
        """
        The result kept for C{key}, with its TTLs counted down to C{now};
        C{None} when there is none or it has expired.
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored, expires, (answers, authority, additional) = entry
        if now >= expires:
            del self._entries[key]
            return None
        elapsed = int(now - stored)

        def aged(records):
            return [
                dns.RRHeader(r.name.name, r.type, r.cls, max(0, r.ttl - elapsed), r.payload, r.auth)
                for r in records
            ]

        return aged(answers), aged(authority), aged(additional)
