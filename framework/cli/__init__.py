"""The ``restlake`` command line: one module per command group.

``main`` (the console script) builds the parser from the groups; ``console`` holds the
output helpers every group shares; ``jobs`` has the wheel-task entry points.
"""

from framework.cli.app import main

__all__ = ["main"]
