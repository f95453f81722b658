"""Fixed-memory bookkeeping for the soak benchmark, which may see millions of jobs: a
log-linear latency histogram, and a bitmap of the sequence numbers seen."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable

LOW_MS = 0.01  # the first bucket's upper edge; anything below (0 included) counts there
HIGH_MS = 600_000.0  # 600 s; anything above counts in the last bucket
GROWTH = 1.01  # each bucket 1% wider than the one before: 1% precision
_LOG_GROWTH = math.log(GROWTH)
BUCKETS = math.ceil(math.log(HIGH_MS / LOW_MS) / _LOG_GROWTH) + 2


class Histogram:
    """Counts of latencies (ms) in ``BUCKETS`` log-spaced buckets (about 1,800: 14 KiB)."""

    __slots__ = ("count", "counts", "max_ms")

    def __init__(self) -> None:
        self.counts = array("Q", bytes(8 * BUCKETS))
        self.count = 0
        self.max_ms = 0.0

    def record(self, ms: float) -> None:
        if ms <= LOW_MS:
            index = 0
        else:
            index = min(BUCKETS - 1, 1 + int(math.log(ms / LOW_MS) / _LOG_GROWTH))
        self.counts[index] += 1
        self.count += 1
        if ms > self.max_ms:
            self.max_ms = ms

    @classmethod
    def merged(cls, parts: Iterable[Histogram]) -> Histogram:
        total = cls()
        for part in parts:
            if part.count:
                total.counts = array("Q", map(sum, zip(total.counts, part.counts, strict=True)))
                total.count += part.count
                total.max_ms = max(total.max_ms, part.max_ms)
        return total

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0-100), nearest-rank, as its bucket's upper edge (the
        maximum itself if that is lower); NaN when empty."""
        if not self.count:
            return float("nan")
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                if index == BUCKETS - 1:  # the open-ended last bucket
                    return self.max_ms
                return min(self.max_ms, LOW_MS * GROWTH**index)
        return self.max_ms


class SeqBitmap:
    """Which sequence numbers were seen (one bit each, growing as needed), and how many
    arrived more than once."""

    __slots__ = ("bits", "duplicates", "seen")

    def __init__(self) -> None:
        self.bits = bytearray(1 << 16)
        self.seen = 0
        self.duplicates = 0

    def add(self, seq: int) -> None:
        byte, bit = seq >> 3, 1 << (seq & 7)
        if byte >= len(self.bits):
            self.bits.extend(bytes(max(byte + 1 - len(self.bits), len(self.bits))))
        if self.bits[byte] & bit:
            self.duplicates += 1
        else:
            self.bits[byte] |= bit
            self.seen += 1

    def missing(self, count: int, limit: int = 10) -> tuple[int, list[int]]:
        """How many of ``0..count-1`` were never seen, and the first ``limit`` of them."""
        absent: list[int] = []
        total = 0
        bits = self.bits
        for byte in range((count + 7) >> 3):
            value = bits[byte] if byte < len(bits) else 0
            if value == 0xFF:
                continue  # the common case, 8 at a time
            for seq in range(byte << 3, min(count, (byte + 1) << 3)):
                if not value & (1 << (seq & 7)):
                    total += 1
                    if len(absent) < limit:
                        absent.append(seq)
        return total, absent
