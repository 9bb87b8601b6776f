"""The private-API adapter warns when the installed Ray or Optuna is not the release it was
written for, naming both versions."""

from __future__ import annotations

import pytest

from clear_ray.runtime import ray_compat


def test_same_major_minor_is_no_mismatch() -> None:
    assert ray_compat.version_mismatches({"ray": "2.60.3", "optuna": "5.1.0"}) == []


def test_other_or_missing_release_is_named_with_the_expected_one() -> None:
    assert ray_compat.version_mismatches({"ray": "2.61.0", "optuna": None}) == [
        "ray 2.61.0 (written for 2.60)",
        "optuna not installed (written for 5.1)",
    ]
    # 2.6 is not 2.60: versions compare as major.minor strings, not as a prefix
    assert ray_compat.version_mismatches({"ray": "2.6.0", "optuna": "5.10.1"}) == [
        "ray 2.6.0 (written for 2.60)",
        "optuna 5.10.1 (written for 5.1)",
    ]


def test_check_versions_warns_once_with_both_versions(monkeypatch) -> None:
    monkeypatch.setattr(
        ray_compat, "installed_versions", lambda: {"ray": "3.0.1", "optuna": "5.1.2"}
    )
    with pytest.warns(RuntimeWarning, match=r"ray 3\.0\.1 \(written for 2\.60\)") as caught:
        ray_compat.check_versions()
    assert len(caught) == 1
    assert "optuna" not in str(caught[0].message)
