"""Named implementations (methods, evaluation tasks, robustness checks), looked up lazily.

One idiom for all three, after lm-evaluation-harness's ``lm_eval/api/registry.py``: a table
names each implementation and the module that defines it, in the order listings use, and a
decorator in that module registers the object under its name when the module is imported. So
names can be listed and checked (``--help``, config validation) without importing torch or an
implementation; looking a name up imports its module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from clear_ray.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """The ``kind`` of thing named in ``table`` (name -> defining module, in listing order)."""

    def __init__(self, kind: str, table: Mapping[str, str]) -> None:
        self.kind = kind
        self._modules = dict(table)
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: registers the decorated object as ``name``, which the table must list."""

        def decorate(obj: T) -> T:
            if name not in self._modules:
                raise ValueError(f"{self.kind} {name!r} is not in its registry's table")
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorate

    def names(self) -> tuple[str, ...]:
        """Every name, in the table's order; imports nothing."""
        return tuple(self._modules)

    def get(self, name: str) -> T:
        """The object registered as ``name``, its module imported on first use; ConfigError
        listing the known names for a name the table lacks."""
        if name not in self._modules:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self._modules)}")
        if name not in self._entries:
            importlib.import_module(self._modules[name])
            if name not in self._entries:
                raise LookupError(f"{self._modules[name]} registers no {self.kind} {name!r}")
        return self._entries[name]

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` for every name, in order (imports every module)."""
        return [(name, self.get(name)) for name in self._modules]

    def values(self) -> list[T]:
        return [self.get(name) for name in self._modules]
