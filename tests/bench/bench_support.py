"""What the brief runner tests share: `midge bench` flags for tiny runs.

Tiny sizes, one round, no ceiling, no chart: these tests check that the
runner's scenarios run to their end and lose nothing, not how fast.
"""

from __future__ import annotations

TINY_FLAGS = ["--duration", "0.3", "--payload", "16", "--window", "20", "--rate", "200"]
TINY_FLAGS += ["--publishers", "2", "--subscribers", "2", "--max-messages", "2000"]
TINY_FLAGS += ["--quiet", "0.5", "--timeout", "10", "--rounds", "1", "--no-ceiling", "--no-chart"]
