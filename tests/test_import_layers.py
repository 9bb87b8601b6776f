"""The package is layered: a module imports only its own layer or lower ones, and no modules
import each other in a circle. Function-level imports count too (a lazy import is still a
dependency), so the plan cannot drift back through them.

Read from the source with ``ast``; nothing is imported. A module's layer is that of the longest
prefix below that names it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clear_ray"

# Lowest first. A module may import from its own layer and the layers below it.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "foundation",
        {
            "clear_ray.errors",
            "clear_ray.console",
            "clear_ray.net",
            "clear_ray.provenance",
            "clear_ray.models.shapes",
            # The generic registry of methods, evaluation tasks and robustness checks.
            "clear_ray.registry",
            # Pure statistics with no clear_ray import: the confirm step and the report share it.
            "clear_ray.paired",
        },
    ),
    (
        "config",
        {
            "clear_ray.config",
            "clear_ray.models.presets",
            "clear_ray.cache",
            "clear_ray.kernels",
            "clear_ray.regularizers",
            "clear_ray.memory",
            "clear_ray.nodes",
            "clear_ray.mlflow_server",
            # The checks' names, which the config validates robust.checks against; the
            # checks themselves (robust/) are looked up by name, never imported here.
            "clear_ray.robust.checks",
        },
    ),
    (
        "models, methods and the Ray runtime",
        {"clear_ray.models", "clear_ray.methods", "clear_ray.runtime"},
    ),
    ("data", {"clear_ray.data", "clear_ray.serving_input"}),
    # data/source.py checks a source against every config the evaluation tasks read.
    ("evaluation", {"clear_ray.eval", "clear_ray.data.source"}),
    ("training", {"clear_ray.train"}),
    ("references", {"clear_ray.references"}),
    ("robustness", {"clear_ray.robust"}),
    ("search", {"clear_ray.search"}),
    ("tracking", {"clear_ray.tracking"}),
    # The search's own MLflow logging: confirm runs, per-trial progress, the trials' logger.
    (
        "search with tracking",
        {"clear_ray.search.confirm", "clear_ray.search.progress", "clear_ray.search.trial_logger"},
    ),
    ("report and serving", {"clear_ray.report", "clear_ray.serving"}),
    ("pipeline", {"clear_ray.pipeline"}),
    (
        "command lines",
        {
            "clear_ray.cli",
            "clear_ray.tune",
            "clear_ray.evaluate",
            "clear_ray.report.__main__",
            "clear_ray.references.__main__",
        },
    ),
]

# (importer, imported): the few imports that run against the layers, each with why.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("clear_ray.models.presets", "clear_ray.models.tiny"): (
        "a preset's base builder imports its model code when called, so config and --help "
        "stay free of torch and transformers"
    ),
    ("clear_ray.models.presets", "clear_ray.models.loading"): "as above, for hub checkpoints",
    ("clear_ray.data.folds", "clear_ray.eval.tasks"): (
        "counting the rows no fold person is named in goes task by task"
    ),
    ("clear_ray.train.loop", "clear_ray.robust.constraint"): (
        "search.constrain_relearn: the trial-end relearn attack runs in the trial's workers"
    ),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The module ``name`` is, or lies in (``clear_ray.config.Config`` -> ``clear_ray.config``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_in(source: str, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Each clear_ray module that ``source`` (the text of ``module``) imports, at any depth,
    with its line."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from clear_ray.models import tiny`` imports the module clear_ray.models.tiny
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            found = resolve(target) if target.startswith("clear_ray") else None
            if found and found != module:
                yield found, node.lineno


def imports(module: str) -> Iterator[tuple[str, int]]:
    path = MODULES[module]
    return imports_in(path.read_text(), module, path.name == "__init__.py")


def layer_of(module: str) -> int:
    best, level = "", None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, level = prefix, index
    if level is None:
        raise AssertionError(f"{module} is on no layer: add it to LAYERS")
    return level


GRAPH = {module: sorted(set(imports(module))) for module in MODULES}


def test_every_module_is_on_a_layer() -> None:
    for module in MODULES:
        if module != "clear_ray":
            layer_of(module)


def test_no_module_imports_a_higher_layer() -> None:
    upward = []
    for module, targets in GRAPH.items():
        if module == "clear_ray":
            continue
        for target, line in targets:
            if target == "clear_ray" or (module, target) in ALLOWED_UPWARD:
                continue
            if layer_of(target) > layer_of(module):
                upward.append(
                    f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {target} "
                    f"({LAYERS[layer_of(module)][0]} -> {LAYERS[layer_of(target)][0]})"
                )
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_allowed_exceptions_are_still_needed() -> None:
    """An exception the code no longer needs is removed, so the list stays the true one."""
    edges = {(module, target) for module, targets in GRAPH.items() for target, _ in targets}
    assert set(ALLOWED_UPWARD) <= edges, set(ALLOWED_UPWARD) - edges


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph = {module: [target for target, _ in targets] for module, targets in GRAPH.items()}
    assert cycles(graph) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": ["b"], "b": ["c"], "c": []}, []),
        ({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}, [["a", "b", "c"]]),
    ],
)
def test_cycle_finder(graph: dict[str, list[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_lazy_relative_and_from_package_imports_are_read() -> None:
    source = """
import os
import clear_ray.config

def build():
    from clear_ray.models import tiny
    from ..runtime.staging import DriverDir
    from . import lora
"""
    found = sorted(imports_in(source, "clear_ray.models.presets", is_package=False))
    assert found == [
        ("clear_ray.config", 3),
        ("clear_ray.models.lora", 8),
        ("clear_ray.models.tiny", 6),
        ("clear_ray.runtime.staging", 7),
    ]
