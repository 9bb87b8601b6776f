"""Which Optuna storage survives ``kill -9`` of the process writing it: SQLite or journal file.

A child process finishes trials (ask, set_constraint, tell) in a loop and is killed with
SIGKILL at a random moment, ``--kills`` times; after each kill this process reopens the study
and finishes one trial (a lock the dead writer left behind shows up as time here). At the end
the study is checked: trial numbers contiguous, every COMPLETE trial with its constraint.
Results: bench/RESULTS.md, "Optuna storage under kill -9".

    python bench/optuna_kill9.py sqlite /tmp/k9-sqlite --kills 25
    python bench/optuna_kill9.py journal /tmp/k9-journal --kills 25
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time

import optuna

DIST = {"x": optuna.distributions.FloatDistribution(0, 1)}


def storage(kind: str, folder: str):
    if kind == "sqlite":
        return f"sqlite:///{folder}/optuna.db"
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(f"{folder}/optuna.journal"))


def one_trial(study: optuna.Study) -> None:
    trial = study.ask(DIST)
    trial.set_constraint("retain", trial.params["x"] - 0.5)
    study.tell(trial, trial.params["x"])


def write_for_ever(kind: str, folder: str) -> None:
    study = optuna.create_study(
        study_name="s", storage=storage(kind, folder), load_if_exists=True, direction="maximize"
    )
    print("ready", flush=True)
    while True:
        one_trial(study)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["sqlite", "journal", "write-sqlite", "write-journal"])
    parser.add_argument("folder")
    parser.add_argument("--kills", type=int, default=25)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if args.kind.startswith("write-"):
        write_for_ever(args.kind.removeprefix("write-"), args.folder)
        return
    os.makedirs(args.folder, exist_ok=True)
    rng = random.Random(0)
    waits, errors = [], []
    for kill in range(args.kills):
        writer = subprocess.Popen(
            [sys.executable, __file__, f"write-{args.kind}", args.folder], stdout=subprocess.PIPE
        )
        writer.stdout.readline()
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        start = time.time()
        try:
            one_trial(optuna.load_study(study_name="s", storage=storage(args.kind, args.folder)))
        except Exception as error:  # recorded, not fatal: that is what is measured
            errors.append(f"kill {kill}: {type(error).__name__}: {error}")
        waits.append(time.time() - start)
    trials = optuna.load_study(study_name="s", storage=storage(args.kind, args.folder)).trials
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    complete = [trial for trial in trials if trial.state.name == "COMPLETE"]
    waits.sort()
    print(
        f"{args.kind}: {args.kills} kills, {len(trials)} trials, numbers contiguous: "
        f"{[t.number for t in trials] == list(range(len(trials)))}, states {states}, "
        f"COMPLETE without constraints: {sum(not t.constraints for t in complete)}, "
        f"reopen + 1 trial after a kill: median {waits[len(waits) // 2]:.2f} s, "
        f"max {waits[-1]:.2f} s, errors: {len(errors)}"
    )
    for error in errors:
        print("  ", error[:200])


if __name__ == "__main__":
    main()
