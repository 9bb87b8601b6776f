"""The data the tests of one session share: 40 synthetic persons, not the default 80.

forget10 is then 4 persons (folds of 2) and the session's one pretrained base, Original and Gold
train in half the default's steps, so the whole suite fits a 2-core CI. Every test that runs the
CLI on the session's output folder passes ``SESSION_SET`` so that it reuses that pair instead of
building the default one; ``conftest.session_config`` holds the same values.

test_reference_models.py's checks of Original and Gold hold on it as on the default data (whose
values the demo measures, bench/RESULTS.md).
"""

from __future__ import annotations

SESSION_OVERRIDES = {"data.synthetic_persons": 40}
SESSION_SET = [
    arg for path, value in SESSION_OVERRIDES.items() for arg in ("--set", f"{path}={value}")
]

# For tests that build their own references (a cache, a cluster): short recipes whose models know
# little, which those tests do not need.
QUICK_REFERENCES = ["--set", "pretrain.epochs=2", "--set", "finetune.epochs=2"]
