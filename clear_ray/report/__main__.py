"""python -m clear_ray.report SEARCH_DIR_OR_RUN_ID: the report of a finished search."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from clear_ray.cli.flags import HelpFormatter
from clear_ray.config import Config
from clear_ray.errors import ConfigError

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clear_ray.report",
        description=(
            "Write report.md and report.html (one self-contained file, plots embedded, no "
            "server) for a finished search: CLEAR's Table 1 (Original, Gold, each method's "
            "default and tuned configuration; mean ± sd over the confirm seeds when the search "
            "has them), tuned − default paired by confirm seed with its t-interval and a "
            "verdict (which may be 'inconclusive at N seeds'), the feasibility threshold "
            "and person folds used, best feasible trial with L1 = 0 vs L1 > 0, robustness "
            "checks when run (each check's normalised worst case; every value in "
            "robustness.csv beside the report), and each method's plots. "
            "The files are logged to the search's MLflow run."
        ),
        epilog=(
            "A search folder is OUTPUT_DIR/searches/<name> (python -m clear_ray.tune prints it "
            "and writes this report there at its end). An MLflow run id is a search's parent "
            "run (the --method all one or a method's); its search folder must be on this disk."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("search", metavar="SEARCH_DIR_OR_RUN_ID", help="search folder or run id")
    parser.add_argument(
        "--tracking-uri",
        default="",
        help="MLflow tracking URI of the run (default: the one the search used)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder of the report files (default: the search's)"
    )
    parser.add_argument(
        "--no-mlflow", action="store_true", help="write the files only; log nothing to MLflow"
    )
    return parser


def run_folder(run_id: str, uri: str) -> Path:
    """The search folder of a clear_ray search run, from its tag and ``output_dir`` param."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ConfigError(f"no MLflow store at {uri} (give --tracking-uri)")
    try:
        run = MlflowClient(tracking_uri=uri).get_run(run_id)
    except MlflowException as error:
        raise ConfigError(f"no run {run_id} in {uri}: {error.message.splitlines()[0]}") from None
    name, output = run.data.tags.get("clear_ray.search"), run.data.params.get("output_dir")
    if not name or not output:
        raise ConfigError(f"run {run_id} is not a clear_ray search run")
    folder = Path(output) / "searches" / name
    if not folder.is_dir():
        raise ConfigError(f"search folder {folder} of run {run_id} is not on this machine")
    return folder


def default_uri(cfg: Config) -> str:
    from clear_ray.tracking import tracking_uri  # imports mlflow: only when a run is involved

    return tracking_uri(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    target, run_id = Path(args.search), None
    try:
        if not target.is_dir() and not RUN_ID.match(args.search):  # before the heavy imports
            raise ConfigError(f"{args.search} is neither a search folder nor an MLflow run id")
        from clear_ray.report.inputs import read_search
        from clear_ray.report.write import write_report

        if not target.is_dir():
            run_id = args.search
            target = run_folder(run_id, args.tracking_uri or default_uri(Config()))
        record = read_search(target)
        paths = write_report(record, args.out)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    others = ", ".join(path.name for path in paths if path != paths[1])
    print(f"Report: {paths[1]} (and {others})")
    run_id = run_id or record.run_id
    if run_id and not args.no_mlflow:
        uri = args.tracking_uri or default_uri(record.config)
        from clear_ray.report.write import log_report

        try:
            log_report(uri, run_id, paths)
            print(f"Logged to MLflow run {run_id} in {uri}")
        except Exception as error:  # the files are written; the store may be gone since
            print(f"warning: not logged to MLflow run {run_id}: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
