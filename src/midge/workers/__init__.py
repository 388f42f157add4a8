"""`midge serve --workers N`: every core of one host, as N nodes of one cluster.

supervisor.py starts and watches the workers (and a private redis-server when
no Redis is configured: private_redis.py); worker.py is what a worker does
differently from a lone `midge serve`; sockets.py holds the operating-system
pieces (SO_REUSEPORT reservations, readiness notes, parent-death signals).
Nothing here is imported by a lone `midge serve`; a worker imports worker.py only.
"""
