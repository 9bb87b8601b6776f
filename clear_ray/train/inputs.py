"""What a trial's Train workers are handed besides the config.

Kept light at import time: the Tune trial actor and the Train controller unpickle
:class:`TrialInputs` by reference (train/worker.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from clear_ray.data.folds import Fold
from clear_ray.eval.reference import GoldReference
from clear_ray.runtime.staging import DriverDir, on_this_node
from clear_ray.train.selection import Thresholds


@dataclass(frozen=True)
class TrialInputs:
    """Everything a worker needs besides the config.

    ``source`` (a hub id or a dataset directory) and ``original_dir`` may be ``DriverDir``s:
    a worker on another node then opens its own copy (``on_this_node``).
    """

    source: str | DriverDir
    original_dir: str | DriverDir
    gold: GoldReference  # Gold's per-item NLLs on the forget-quality tasks, on ``fold``
    thresholds: Thresholds
    # The selection fold: every per-epoch evaluation (hence ASHA, best epoch, Optuna) scores
    # its forget persons only; None without folds (data/folds.py).
    fold: Fold | None = None
    # For search.constrain_relearn (robust/constraint.py): Gold's checkpoint and the selection
    # fold's forget persons the attack splits into attacked and held-out halves.
    gold_dir: str | DriverDir | None = None
    relearn_persons: tuple[str, ...] = ()

    def on_this_node(self) -> TrialInputs:
        return replace(
            self,
            source=on_this_node(self.source),
            original_dir=on_this_node(self.original_dir),
            gold_dir=on_this_node(self.gold_dir) if self.gold_dir is not None else None,
        )
