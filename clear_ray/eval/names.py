"""The registry of evaluation tasks and the names of the aggregate metrics every evaluation
reports.

Light on purpose (no task is imported until one is looked up), so the CLIs can check
``eval.tasks`` and name metrics before torch is loaded: bad input fails in about a second, not
after the ~5 s import of the evaluation stack. The trial bookkeeping (``train/selection.py``)
and the evaluation summary list the same metrics.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from clear_ray.errors import ConfigError
from clear_ray.registry import Registry

ALL_TASKS = "all"
FORGET_CAPTIONS = "forget_captions"
FORGET_TEXT = "forget_text_perturbed"  # TOFU-style QA with paraphrased/perturbed answers
# Each a ``Task`` registered in eval/tasks.py (``register_task``; a module that imports this
# one). Evaluations run and report tasks in this order.
TASKS: Registry[Any] = Registry(
    "evaluation task",
    {
        name: "clear_ray.eval.tasks"
        for name in (
            FORGET_CAPTIONS,
            "retain_captions",
            "forget_face_naming",
            "retain_face_naming",
            "forget_text_qa",
            FORGET_TEXT,
            "retain_text_qa",
            "real_faces",
            "real_world",
        )
    },
)
TASK_NAMES = TASKS.names()
FORGET_QUALITY_TASKS = (FORGET_CAPTIONS, FORGET_TEXT)  # what Gold's reference covers
# The forget-quality task(s) of each ``data.modality``: forgetting is compared with Gold on what
# was forgotten. ``both`` combines its two tasks' tests into one (eval/suite.py
# ``with_objective``).
OBJECTIVE_TASKS = {
    "visual": (FORGET_CAPTIONS,),
    "text": (FORGET_TEXT,),
    "both": (FORGET_CAPTIONS, FORGET_TEXT),
}

# Same names, two definitions: clear/<name> is CLEAR's, the bare name the project's extended one.
EXTENDED_AGGREGATES = ("real_metric", "retain_metric", "forget_metric", "model_utility")
# The KS p-value against Gold (TOFU's forget quality), its log, and 1 − Jensen–Shannon.
FORGET_QUALITY_METRICS = ("forget_quality", "log_forget_quality", "forget_quality_js")
KS_STATISTIC = "ks_d"  # the KS statistic D behind the p-value: its effect size
ITEM_COUNT = "n_items"  # items a side of the comparison with Gold
FORGET_DISTANCE = "forget_distance"  # W1 between log truth ratios of model and Gold (nats)
NEG_FORGET_DISTANCE = "neg_forget_distance"  # −forget_distance: the objective that maximises
# What each forget-quality task reports as ``<task>/<name>`` (eval/suite.py).
TASK_COMPARISON_METRICS = (*FORGET_QUALITY_METRICS, KS_STATISTIC, ITEM_COUNT, FORGET_DISTANCE)
# The objective's columns, each combining the modality's tasks (eval/suite.py with_objective).
OBJECTIVE_METRICS = (*FORGET_QUALITY_METRICS, FORGET_DISTANCE, NEG_FORGET_DISTANCE)
# CLEAR's Table 1 columns (mm/build_vllm_table.py) and its forget quality, computed as CLEAR does,
# with the KS statistic of its forget quality.
CLEAR_METRICS = (
    *(f"clear/{name}" for name in (*EXTENDED_AGGREGATES, *FORGET_QUALITY_METRICS)),
    f"clear/{KS_STATISTIC}",
)
SUMMARY_METRICS = (*CLEAR_METRICS, *EXTENDED_AGGREGATES, *OBJECTIVE_METRICS)


def is_item_count(key: str) -> bool:
    """Whether metric ``key`` counts a fold's items (the same for every seed: no spread)."""
    return key.endswith(f"/{ITEM_COUNT}")


def named_tasks(spec: str) -> tuple[str, ...]:
    """``eval.tasks`` ("all" or comma-separated names) as known task names, in registry order.

    "all" is every task here; ``eval/tasks.py``'s ``resolve_task_names`` also leaves out an
    optional task whose CLEAR config the data lacks.
    """
    if spec.strip() == ALL_TASKS:
        return TASK_NAMES
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in TASK_NAMES]
    if unknown or not names:
        bad = unknown[0] if unknown else spec
        raise ConfigError(
            f"eval.tasks: unknown task {bad!r}; "
            f"expected 'all' or a comma-separated list of {', '.join(TASK_NAMES)}"
        )
    return tuple(name for name in TASK_NAMES if name in names)


def objective_tasks(modality: str, available: Iterable[str]) -> tuple[str, ...]:
    """The forget-quality tasks of ``modality`` that are among ``available``.

    ``both`` with only the captions evaluated (``eval.tasks`` without the text task) gives the
    captions alone; the runs record which tasks the objective used (``objective_task``).
    """
    present = set(available)
    return tuple(name for name in OBJECTIVE_TASKS[modality] if name in present)
