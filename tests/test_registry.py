"""The one registry idiom (clear_ray/registry.py) and its three tables: methods, evaluation
tasks, robustness checks. Names list without importing an implementation; a lookup imports
its module, whose decorator registers it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clear_ray.errors import ConfigError
from clear_ray.eval.names import TASK_NAMES, TASKS
from clear_ray.methods import METHODS, TABLE_METHODS
from clear_ray.registry import Registry
from clear_ray.robust.checks import CHECKS, ROBUST_CHECKS


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry[str]:
    """A registry of two entries, each in its own module that registers it when imported."""
    registry: Registry[str] = Registry("plugin", {"b": "plugin_b", "a": "plugin_a"})
    for name in ("a", "b"):
        (tmp_path / f"plugin_{name}.py").write_text(
            textwrap.dedent(
                f"""
                from test_registry_host import REGISTRY

                @REGISTRY.register("{name}")
                def run():
                    return "{name} ran"
                """
            )
        )
    host = type(sys)("test_registry_host")
    host.REGISTRY = registry
    monkeypatch.setitem(sys.modules, "test_registry_host", host)
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("plugin_a", "plugin_b"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    return registry


def test_names_are_listed_in_the_tables_order_without_importing_anything(plugins) -> None:
    assert plugins.names() == ("b", "a") and list(plugins) == ["b", "a"]
    assert "a" in plugins and "c" not in plugins and len(plugins) == 2
    assert "plugin_a" not in sys.modules and "plugin_b" not in sys.modules


def test_a_lookup_imports_only_that_names_module(plugins) -> None:
    assert plugins.get("a")() == "a ran"
    assert "plugin_a" in sys.modules and "plugin_b" not in sys.modules
    assert plugins["a"] is plugins.get("a")


def test_items_follow_the_tables_order(plugins) -> None:
    assert [(name, run()) for name, run in plugins.items()] == [("b", "b ran"), ("a", "a ran")]


def test_an_unknown_name_is_a_config_error_listing_the_known_ones(plugins) -> None:
    with pytest.raises(ConfigError, match=r"^unknown plugin 'c'; known: b, a$"):
        plugins.get("c")


def test_the_decorator_refuses_a_name_the_table_lacks_and_a_second_registration() -> None:
    registry: Registry[int] = Registry("plugin", {"a": "nowhere"})
    with pytest.raises(ValueError, match="'c' is not in its registry's table"):
        registry.register("c")(1)
    registry.register("a")(1)
    with pytest.raises(ValueError, match="'a' is registered twice"):
        registry.register("a")(2)


def test_a_module_that_does_not_register_its_name_says_so() -> None:
    registry: Registry[int] = Registry("plugin", {"a": "json"})
    with pytest.raises(LookupError, match="json registers no plugin 'a'"):
        registry.get("a")


def test_user_visible_orders_are_unchanged() -> None:
    """--method all, the evaluation's task order and the leaderboard's check columns."""
    assert TABLE_METHODS == (
        "retain_ft", "ga", "gd", "kl", "idk", "dpo", "npo", "simnpo", "rmu", "llmu", "scrub",
    )  # fmt: skip
    assert METHODS.names() == (*TABLE_METHODS, "llmu_clear")
    assert TASK_NAMES == TASKS.names() == (
        "forget_captions", "retain_captions", "forget_face_naming", "retain_face_naming",
        "forget_text_qa", "forget_text_perturbed", "retain_text_qa", "real_faces", "real_world",
    )  # fmt: skip
    assert ROBUST_CHECKS == CHECKS.names() == ("relearn", "quantize", "prompts", "cross_modal")


@pytest.mark.parametrize("registry", [METHODS, TASKS, CHECKS], ids=["methods", "tasks", "checks"])
def test_every_listed_name_is_registered_by_its_module_under_that_name(registry) -> None:
    for name, entry in registry.items():
        assert getattr(entry, "name", name) == name


def test_listing_every_name_imports_neither_torch_nor_an_implementation() -> None:
    """What --help and config validation read stays light."""
    code = (
        "import sys\n"
        "from clear_ray.config import Config\n"
        "from clear_ray.methods import METHODS\n"
        "from clear_ray.eval.names import TASKS\n"
        "from clear_ray.robust.checks import CHECKS\n"
        "Config().replace({'robust.checks': 'relearn'}).validate()\n"
        "print(METHODS.names(), TASKS.names(), CHECKS.names())\n"
        "heavy = [m for m in sys.modules if m == 'torch' or m.startswith(("
        "'clear_ray.methods.', 'clear_ray.eval.tasks', 'clear_ray.robust.relearn'))]\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
