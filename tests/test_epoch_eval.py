"""Which evaluation config each kind of evaluation uses: per-epoch scoring generates for ROUGE
only when a selection metric reads ROUGE; final evaluations always follow ``eval.generate``."""

from __future__ import annotations

import pytest

from clear_ray.config import Config
from clear_ray.eval.final import epoch_eval_config, full_eval_config, selects_on_rouge


@pytest.mark.parametrize(
    ("overrides", "reads_rouge"),
    [
        ({}, False),  # objective + CLEAR's Retain column: truth ratios and probabilities
        ({"search.objective": "forget_quality_js"}, False),
        ({"search.retain_metric": "retain_metric"}, True),  # extended: ROUGE in its mean
        ({"search.min_utility": 0.8}, True),  # a utility constraint: utility has ROUGE
        ({"search.multi_objective": True}, True),  # Pareto on model utility
    ],
)
def test_selection_reads_rouge_only_through_extended_retain_or_utility(
    overrides: dict, reads_rouge: bool
) -> None:
    cfg = Config().replace(overrides)
    assert selects_on_rouge(cfg.search) is reads_rouge
    assert epoch_eval_config(cfg).generate is reads_rouge
    assert full_eval_config(cfg.eval).generate  # final numbers keep ROUGE


def test_no_generation_asked_for_is_none_per_epoch_either() -> None:
    cfg = Config().replace({"eval.generate": False, "search.retain_metric": "retain_metric"})
    assert not epoch_eval_config(cfg).generate
    assert epoch_eval_config(cfg).proxy_items == cfg.eval.proxy_items
