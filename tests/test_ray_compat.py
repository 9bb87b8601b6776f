"""The private-API adapter warns when the installed Ray or Optuna is not the release it was
tested with, naming both versions; pyproject.toml allows that release only."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement

from clear_ray.runtime import ray_compat


def test_same_major_minor_is_no_mismatch() -> None:
    assert ray_compat.version_mismatches({"ray": "2.60.3", "optuna": "5.1.0"}) == []


def test_other_or_missing_release_is_named_with_the_expected_one() -> None:
    assert ray_compat.version_mismatches({"ray": "2.61.0", "optuna": None}) == [
        "ray 2.61.0 (tested with 2.60)",
        "optuna not installed (tested with 5.1)",
    ]
    # 2.6 is not 2.60: versions compare as major.minor strings, not as a prefix
    assert ray_compat.version_mismatches({"ray": "2.6.0", "optuna": "5.10.1"}) == [
        "ray 2.6.0 (tested with 2.60)",
        "optuna 5.10.1 (tested with 5.1)",
    ]


def test_check_versions_warns_once_with_both_versions(monkeypatch) -> None:
    monkeypatch.setattr(
        ray_compat, "installed_versions", lambda: {"ray": "3.0.1", "optuna": "5.1.2"}
    )
    with pytest.warns(RuntimeWarning, match=r"ray 3\.0\.1 \(tested with 2\.60\)") as caught:
        ray_compat.check_versions()
    assert len(caught) == 1
    assert "optuna" not in str(caught[0].message)


def test_pyproject_allows_exactly_the_tested_releases() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    requirements = {
        (req := Requirement(line)).name: req.specifier
        for line in tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    }
    for name, tested in ray_compat.WRITTEN_FOR.items():
        major, minor = (int(part) for part in tested.split("."))
        specifier = requirements[name]
        assert f"{tested}.0" in specifier and f"{tested}.9" in specifier, (name, specifier)
        for other in (f"{major}.{minor - 1}.0", f"{major}.{minor + 1}.0", f"{major + 1}.0.0"):
            assert other not in specifier, (name, specifier, other)
