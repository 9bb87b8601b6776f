"""Registry of robustness checks: one module per check, each registering its ``check``
function with :func:`register_check`.

Light on purpose (no check is imported until one is looked up), so the config can validate
``robust.checks`` against :data:`ROBUST_CHECKS` without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clear_ray.registry import Registry

# Each a ``check(ctx: CheckContext) -> CheckResult`` (robust/context.py, a layer above this).
CHECKS: Registry[Callable[..., Any]] = Registry(
    "robustness check",
    {  # the order of the leaderboard's and the report's check columns
        "relearn": "clear_ray.robust.relearn",
        "quantize": "clear_ray.robust.quantize",
        "prompts": "clear_ray.robust.prompts",
        "cross_modal": "clear_ray.robust.cross_modal",
    },
)
ROBUST_CHECKS = CHECKS.names()
register_check = CHECKS.register
