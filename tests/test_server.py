"""What `midge serve` sets up around the broker (the rest runs in tests/integration)."""

from __future__ import annotations

import gc

from midge.server import GC_THRESHOLDS, settle_collector


def test_settle_collector_freezes_start_up_and_collects_less_often() -> None:
    thresholds = gc.get_threshold()
    try:
        settle_collector()
        assert gc.get_freeze_count() > 0  # modules and start-up state: never walked again
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
