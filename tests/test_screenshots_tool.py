"""tools/screenshots.py: the pages it opens and its answer when Chromium is missing."""

from __future__ import annotations

import importlib.util
import json
import urllib.parse
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "screenshots.py"


@pytest.fixture(scope="module")
def screenshots():
    spec = importlib.util.spec_from_file_location("screenshots", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pages_open_the_run_the_sorted_children_and_their_comparison(screenshots) -> None:
    urls = screenshots.pages("http://h:1", "3", "p9", ["c1", "c2"])
    view = "workflowType=machine_learning"
    assert urls["parent_run"] == f"http://h:1/#/experiments/3/runs/p9?{view}"
    table = urllib.parse.parse_qs(urls["trial_table"].split("?", 1)[1])
    assert table["searchFilter"] == ["tags.`mlflow.parentRunId` = 'p9'"]
    assert table["orderByKey"] == ["metrics.`feasible_objective`"]
    assert table["orderByAsc"] == ["false"] and table["workflowType"] == ["machine_learning"]
    compared = urllib.parse.parse_qs(urls["trial_comparison"].split("?", 1)[1])
    assert json.loads(compared["runs"][0]) == ["c1", "c2"]  # best first, as given
    assert json.loads(compared["experiments"][0]) == ["3"]


def test_a_missing_chromium_says_how_to_install_it(screenshots) -> None:
    with pytest.raises(SystemExit, match="apt-get install -y chromium"):
        screenshots.find_chromium("no-such-browser-here")
