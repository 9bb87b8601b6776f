"""Registry of unlearning methods: one module per method, each registering its loss with
:func:`register_method`.

Adding a method costs one file and one line in :data:`METHODS`' table. Listing or checking
names imports no method (and so no torch): ``--help`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from clear_ray.config import METHOD_FIELDS
from clear_ray.errors import ConfigError
from clear_ray.registry import Registry

if TYPE_CHECKING:
    from clear_ray.methods.base import Loss, Method

METHODS: Registry[Method] = Registry(
    "method",
    {  # the order of the CLEAR paper's Table 1 (and of --method all)
        "retain_ft": "clear_ray.methods.retain_ft",
        "ga": "clear_ray.methods.ga",
        "gd": "clear_ray.methods.gd",
        "kl": "clear_ray.methods.kl",
        "idk": "clear_ray.methods.idk",
        "dpo": "clear_ray.methods.dpo",
        "npo": "clear_ray.methods.npo",
        "simnpo": "clear_ray.methods.simnpo",
        "rmu": "clear_ray.methods.rmu",
        "llmu": "clear_ray.methods.llmu",
        "scrub": "clear_ray.methods.scrub",
        # a variant (CLEAR's reverse retain KL): searched by name, not in --method all
        "llmu_clear": "clear_ray.methods.llmu_clear",
    },
)
VARIANTS = ("llmu_clear",)
TABLE_METHODS = tuple(name for name in METHODS.names() if name not in VARIANTS)  # --method all


def register_method(name: str, **declared: Any) -> Callable[[Loss], Loss]:
    """Decorator over a method's loss: registers ``Method(name, loss=<it>, **declared)``.

    ``declared`` holds :class:`~clear_ray.methods.base.Method`'s other fields (views,
    reference_views, paper, reads, ...).
    """
    from clear_ray.methods.base import Method  # lazy: torch, not loaded by --help

    def decorate(loss: Loss) -> Loss:
        METHODS.register(name)(Method(name=name, loss=loss, **declared))
        return loss

    return decorate


def get_method(name: str) -> Method:
    """The registered method called ``name``; ConfigError lists the known names otherwise."""
    return METHODS.get(name)


def method_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` (dotted paths, ``method.name`` among them) without the method fields that
    method does not read: what its runs log, so a run shows only settings that shaped it."""
    reads = set(get_method(params["method.name"]).reads)
    return {
        path: value for path, value in params.items() if path not in METHOD_FIELDS or path in reads
    }


def check_space_fields(name: str, paths: Iterable[str], origin: str) -> None:
    """ConfigError when a search space of method ``name`` searches a method field it does
    not read: its trials would differ in a setting that changes nothing."""
    reads = get_method(name).reads
    for path in paths:
        if path in METHOD_FIELDS and path not in reads:
            raise ConfigError(
                f"{origin}: {name} does not read {path}; its method fields: "
                f"{', '.join(reads) or 'none'}"
            )
