"""What a sweep prints while it runs: one plain line per trial that ends, in place of Tune's
tables (``verbose=0``), so a terminal and a log file read the same and the summary comes last.
"""

from __future__ import annotations

from typing import Any

from ray import tune

from trainables.results import PLANNED_KEY, ran_all_epochs


class TrialLines(tune.Callback):
    """``trial 3/8 ab12cd34: 4 of 12 epochs (stopped early), best f1_7b 0.6216 (best so far)``."""

    def __init__(self, metric: str, mode: str, total: int) -> None:
        self.metric, self.mode, self.total = metric, mode, total
        self.ended = 0
        self.best: float | None = None

    def setup(self, **info: Any) -> None:
        print(f"sweep: {self.total} trials, each line below is one that ended "
              f"({self.metric} on the dev split the sweep selects on)", flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended += 1
        result = trial.last_result or {}
        value = (trial.metric_analysis.get(self.metric) or {}).get(self.mode)
        line = f"trial {self.ended}/{self.total} {trial.trial_id}: "
        if PLANNED_KEY in result:
            line += (f"{result.get('epoch')} of {result[PLANNED_KEY]} epochs"
                     + ("" if ran_all_epochs(result) else " (stopped early)"))
        if value is not None:
            line += f", best {self.metric} {value:.4f}"
            if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
                self.best = value
                line += " (best so far)"
        print(line, flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended += 1
        print(f"trial {self.ended}/{self.total} {trial.trial_id}: failed "
              f"({trial.error_file or 'no error file'})", flush=True)
