"""The fault suite's cluster: ``benchmarks.cluster.Cluster`` (shared with the soak benchmark)
with the suite's own postgresql.conf additions."""

from __future__ import annotations

from benchmarks.cluster import Cluster

__all__ = ["CONFIG", "Cluster"]

CONFIG = """
# aqueue fault suite: many worker processes, each with a pool, a listener and a heartbeat.
max_connections = 400
# A throwaway cluster: crash safety of the OS page cache is enough (the tests kill
# processes, not the machine), and fsync would dominate the run time.
fsync = off
"""
