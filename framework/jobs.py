"""Job steps for notebooks and wheel tasks: kept here for existing imports.

The steps live in :mod:`framework.cli.jobs`; ``from framework import jobs`` and
``spark-submit framework/jobs.py (generate|run) ...`` keep working.
"""

import sys

from framework.cli.jobs import (config_files, generate, generate_main, main, open_store,
                                register_views, run, run_main)

__all__ = ["config_files", "generate", "generate_main", "main", "open_store", "register_views",
           "run", "run_main"]

if __name__ == "__main__":  # spark-submit framework/jobs.py ...
    sys.exit(main())
