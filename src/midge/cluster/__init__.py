"""Midge nodes clustered on Redis (docs/cluster.md).

Nothing here is imported unless `[cluster]` is configured: a lone broker
pays nothing for it.
"""
