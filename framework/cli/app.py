"""The ``restlake`` command line (a public contract: names are kept, only extended).

Each command group is a module with ``EXAMPLES`` and ``add_commands(sub, add)``, which
adds its subcommands (``add(name, help)`` returns the subparser, its ``--help``
showing the group's example) and returns their handlers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import textwrap
from typing import Callable, Optional, Sequence

from rich.markup import escape

from framework.cli.console import err_console, error
from framework.errors import RestlakeError
from framework.secrets import install_log_redaction, redact

#: The command groups, in the order ``restlake --help`` lists them.
GROUPS = (
    "framework.cli.control",
    "framework.cli.load",
    "framework.cli.demo",
    "framework.cli.ops",
    "framework.cli.worksheet",
    "framework.cli.service",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The parser of every command, and the handler of each command name."""
    parser = argparse.ArgumentParser(
        prog="restlake",
        description="Load REST APIs into Delta Lake tables, driven by a control table.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              restlake demo                          # the whole flow on a bundled demo API
              restlake validate conf/*.yaml
              restlake --warehouse ./wh init
              restlake --warehouse ./wh generate --config conf/github_issues.yaml
              restlake --warehouse ./wh run --all
              restlake --warehouse ./wh status
            """))
    parser.add_argument("--warehouse", metavar="DIR",
                        help="local warehouse folder (env RESTLAKE_WAREHOUSE, default ./warehouse; "
                             "on Databricks: Unity Catalog tables)")
    parser.add_argument("--control-catalog", default=os.environ.get("RESTLAKE_CONTROL_CATALOG", "main"),
                        metavar="NAME", help="catalog of the metadata schema (default main)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Handler] = {}
    for name in GROUPS:
        module = importlib.import_module(name)
        examples = getattr(module, "EXAMPLES", {})

        def add(command: str, help_text: str, examples: dict[str, str] = examples
                ) -> argparse.ArgumentParser:
            return sub.add_parser(command, help=help_text, description=help_text,
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog="example:\n  " + examples[command])

        handlers.update(module.add_commands(sub, add))
    return parser, handlers


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    install_log_redaction()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``restlake`` console script."""
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    _setup_logging(args.verbose)
    try:
        return handlers[args.command](args)
    except RestlakeError as exc:
        error(str(exc))
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: say it plainly, redacted, no secrets
        if args.verbose:
            import traceback

            err_console.print(escape(redact(traceback.format_exc())))
        error(f"{type(exc).__name__}: {redact(str(exc))[:2000]}")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
