"""``python -m clear_ray.tune``: the search's command line (``clear_ray/cli/tune.py``)."""

import sys

from clear_ray.cli.tune import main

if __name__ == "__main__":
    sys.exit(main())
