"""Cluster mode (`cluster.redis`): every server process is a member of one cluster sharing
messages, membership and counters through Redis. See bus.py."""

from .bus import Cluster, ClusterStartError

__all__ = ["Cluster", "ClusterStartError"]
