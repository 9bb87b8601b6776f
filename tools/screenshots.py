"""Headless-Chromium screenshots of a search in the MLflow UI: its run page and its trial table.

What a user sees after ``python -m clear_ray.tune``: the search's parent run (Description,
``best/*`` metrics, ``best.*`` params), its child runs sorted by ``feasible_objective``
(feasible trials first, best first), and those trials compared side by side. Against a
running server, or a store this script serves itself with ``mlflow server --workers 1`` on
127.0.0.1 for as long as it runs.

    python tools/screenshots.py --backend-store-uri sqlite:////abs/out/mlflow.db --out shots/
    python tools/screenshots.py --tracking-uri http://127.0.0.1:5000 --run-id <parent run id>

Needs Debian's ``chromium`` (``apt-get install chromium``) or ``--chromium PATH``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from contextlib import nullcontext
from pathlib import Path

from clear_ray.cli.flags import HelpFormatter
from clear_ray.tracking import FEASIBLE_OBJECTIVE, UI_VIEW

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SEARCH_ROLE = "search"  # the clear_ray.role tag of a search's run (clear_ray/pipeline/method.py)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python tools/screenshots.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tracking-uri", help="a running MLflow server, http://host:port")
    where.add_argument(
        "--backend-store-uri",
        help="a store to serve here (sqlite:////abs/path/mlflow.db, as clear_ray.tune writes)",
    )
    parser.add_argument(
        "--artifacts-destination",
        type=Path,
        help="with --backend-store-uri: where its mlflow-artifacts:/ runs keep artifacts "
        "(a clear_ray.tune store keeps them at absolute paths and needs none)",
    )
    parser.add_argument("--experiment", default="clear_ray", help="MLflow experiment name")
    parser.add_argument("--run-id", help="the search's parent run; default: the latest search")
    parser.add_argument("--out", type=Path, default=Path("screenshots"), help="folder for PNGs")
    parser.add_argument("--window-size", default="1600,1300", help="browser width,height")
    parser.add_argument(
        "--wait-ms", type=int, default=15000, help="virtual time the UI gets to load and render"
    )
    parser.add_argument(
        "--chromium", help=f"browser binary; default: the first of {', '.join(CHROMIUM_NAMES)}"
    )
    return parser


def find_chromium(explicit: str | None) -> str:
    for name in (explicit,) if explicit else CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit(
        f"error: no Chromium found ({explicit or ', '.join(CHROMIUM_NAMES)}); install Debian's "
        "with `apt-get install -y chromium` or pass --chromium PATH"
    )


def pages(ui: str, experiment_id: str, run_id: str, trial_ids: list[str]) -> dict[str, str]:
    """File stem -> URL: the parent run's page, its children ordered as the Description says
    (the UI keeps a table's filter and order in query parameters), and the trials' params and
    metrics side by side (the runs table shows neither by default)."""
    query = urllib.parse.urlencode(
        {
            "searchFilter": f"tags.`mlflow.parentRunId` = '{run_id}'",
            "orderByKey": f"metrics.`{FEASIBLE_OBJECTIVE}`",
            "orderByAsc": "false",
        },
        quote_via=urllib.parse.quote,
    )
    compared = urllib.parse.urlencode(
        {"runs": json.dumps(trial_ids), "experiments": json.dumps([experiment_id])},
        quote_via=urllib.parse.quote,
    )
    return {
        "parent_run": f"{ui}/#/experiments/{experiment_id}/runs/{run_id}{UI_VIEW}",
        "trial_table": f"{ui}/#/experiments/{experiment_id}/runs{UI_VIEW}&{query}",
        "trial_comparison": f"{ui}/#/compare-runs{UI_VIEW}&{compared}",
    }


def trials_best_first(client, experiment_id: str, run_id: str) -> list[str]:
    """The search's child runs, feasible ones first by their objective (as the table sorts)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
        order_by=[f"metrics.`{FEASIBLE_OBJECTIVE}` DESC"],
    )
    return [run.info.run_id for run in runs]


def latest_search(client, experiment_name: str) -> tuple[str, str]:
    """(experiment id, run id) of the experiment's latest search run."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise SystemExit(f"error: no experiment {experiment_name!r} in this store")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`clear_ray.role` = '{SEARCH_ROLE}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise SystemExit(f"error: no clear_ray search run in experiment {experiment_name!r}")
    return experiment.experiment_id, runs[0].info.run_id


def screenshot(chromium: str, url: str, path: Path, window_size: str, wait_ms: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--window-size={window_size}",
            f"--virtual-time-budget={wait_ms}", f"--screenshot={path}", url,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    if result.returncode != 0 or not path.is_file():
        raise SystemExit(f"error: chromium failed on {url}:\n{result.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    chromium = find_chromium(args.chromium)
    from mlflow.tracking import MlflowClient

    from clear_ray.mlflow_server import mlflow_server

    args.out.mkdir(parents=True, exist_ok=True)
    if args.tracking_uri:
        serving = nullcontext(args.tracking_uri.rstrip("/"))
    else:
        artifacts = args.artifacts_destination or args.out / "mlartifacts"
        serving = mlflow_server(args.backend_store_uri, artifacts.resolve())
    with serving as ui:
        client = MlflowClient(ui)
        if args.run_id:
            experiment_id = client.get_run(args.run_id).info.experiment_id
            run_id = args.run_id
        else:
            experiment_id, run_id = latest_search(client, args.experiment)
        trial_ids = trials_best_first(client, experiment_id, run_id)
        for stem, url in pages(ui, experiment_id, run_id, trial_ids).items():
            path = (args.out / f"{stem}.png").resolve()
            screenshot(chromium, url, path, args.window_size, args.wait_ms)
            print(f"{path}  <-  {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
