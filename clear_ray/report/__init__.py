"""The report of a finished search: CLEAR's Table 1, the L1 question, plots.

``python -m clear_ray.report SEARCH_DIR_OR_RUN_ID`` (``__main__.py``); ``write.write_report``
is what ``clear_ray.tune`` calls at the end of every search. The package root imports nothing
heavy, so ``--help`` and bad input answer at once.
"""
