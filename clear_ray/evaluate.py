"""``python -m clear_ray.evaluate``: one model's evaluation (``clear_ray/cli/evaluate.py``)."""

import sys

from clear_ray.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
