"""``--constrain-relearn X``: the relearning attack as a constraint of the search.

For users who want robustness selected, not only measured: at a trial's end the adapter of
its best epoch is attacked as robust/relearn.py attacks the selected models (same function,
same ``robust.relearn_*`` budget, same content cache, robust/run.py), but on the *selection*
fold's forget persons: whatever selects never looks at the report fold (data/folds.py). The
net recovery (worst over ``robust.relearn_lrs``) becomes the trial's ``max_relearn``
constraint (train/selection.py), told to Optuna with the retain constraint
(search/constrained.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from clear_ray.config import SearchConfig
from clear_ray.errors import ConfigError
from clear_ray.train.inputs import TrialInputs
from clear_ray.train.keys import RELEARN_RECOVERY

MIN_PERSONS = 2  # the attack trains on one half of the persons and scores the other


def check_relearn_persons(search: SearchConfig, persons: Sequence[str]) -> None:
    """Refuses, before any trial, a relearn constraint its attack could never measure."""
    if search.constrain_relearn is not None and len(persons) < MIN_PERSONS:
        raise ConfigError(
            f"search.constrain_relearn: the selection fold has {len(persons)} forget "
            f"person(s), the relearning attack needs {MIN_PERSONS} (a larger forget split or "
            f"a smaller --report-fraction)"
        )


def relearn_at_trial_end(cfg, inputs: TrialInputs, adapter: dict[str, bytes]) -> dict[str, float]:
    """The ``robust/relearn/*`` metrics of ``adapter`` on the selection persons; raises when
    the attack did not measure a recovery (a trial must never pass unmeasured)."""
    from clear_ray.robust import relearn
    from clear_ray.robust.run import cached_check

    result, _ = cached_check(
        relearn.CHECK,
        cfg,
        inputs.original_dir,
        inputs.gold_dir,
        adapter,
        inputs.source,
        inputs.relearn_persons,
    )
    if RELEARN_RECOVERY not in result.metrics:
        notes = "; ".join(result.notes) or "no recovery"
        raise RuntimeError(f"search.constrain_relearn: the relearning attack did not run: {notes}")
    return result.metrics
