"""What a trial reports besides its dev metrics, read by the driver's callbacks and reports:
the key of its planned epochs, and whether its last result was its last planned epoch."""

from __future__ import annotations

from typing import Any

PLANNED_KEY = "epochs_planned"


def ran_all_epochs(result: dict[str, Any]) -> bool:
    """Whether a trial's last reported result is its planned last epoch. Tune marks every
    ended trial ``done``, so this is what tells a completed trial from one stopped early (by
    ASHA, or by ``training.early_stopping_patience``)."""
    return int(result.get("epoch", 0)) >= int(result.get(PLANNED_KEY, 0) or 0) > 0
