"""``python -m framework.cli ...`` runs the ``restlake`` command."""

import sys

from framework.cli.app import main

sys.exit(main())
