"""Registry of unlearning methods: one module per method, each defining ``METHOD``.

Adding a method costs one file and one line in ``_METHOD_MODULES``.
"""

from __future__ import annotations

import importlib

from clear_ray.errors import ConfigError
from clear_ray.methods.base import Method

_METHOD_MODULES = (  # the order of the CLEAR paper's Table 1 (and of --method all)
    "retain_ft",
    "ga",
    "gd",
    "kl",
    "idk",
    "dpo",
    "npo",
    "simnpo",
    "rmu",
    "llmu",
    "scrub",
    "llmu_clear",  # a variant (CLEAR's reverse retain KL): searched by name, not in --method all
)
VARIANTS = ("llmu_clear",)

METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        importlib.import_module(f"{__name__}.{module}").METHOD for module in _METHOD_MODULES
    )
}


TABLE_METHODS = tuple(name for name in METHODS if name not in VARIANTS)  # --method all


def get_method(name: str) -> Method:
    """The registered method called ``name``; ConfigError lists the known names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None
