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

from framework.cli.console import err_console, error, print_error
from framework import logs
from framework.errors import RestlakeError, trace_summary
from framework.secrets import redact

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
              restlake --log-format json --log-file ./logs/restlake.log run --all
            """))
    parser.add_argument("--warehouse", metavar="DIR",
                        help="local warehouse folder (env RESTLAKE_WAREHOUSE, default ./warehouse; "
                             "on Databricks: Unity Catalog tables)")
    parser.add_argument("--control-catalog", default=os.environ.get("RESTLAKE_CONTROL_CATALOG", "main"),
                        metavar="NAME", help="catalog of the metadata schema (default main)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (level INFO)")
    logs.add_arguments(parser)
    # The logging options are global, and every command takes them after its name too.
    log_options = argparse.ArgumentParser(add_help=False)
    logs.add_arguments(log_options, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Handler] = {}
    for name in GROUPS:
        module = importlib.import_module(name)
        examples = getattr(module, "EXAMPLES", {})

        def add(command: str, help_text: str, examples: dict[str, str] = examples
                ) -> argparse.ArgumentParser:
            return sub.add_parser(command, help=help_text, description=help_text,
                                  parents=[log_options],
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog="example:\n  " + examples[command])

        handlers.update(module.add_commands(sub, add))
    return parser, handlers


def _setup_logging(args: argparse.Namespace) -> None:
    """Logging for the command: ``--log-level``, else INFO with ``-v`` or for long-lived
    commands (their ``default_log_level``), else WARNING."""
    default = "INFO" if args.verbose else getattr(args, "default_log_level", "WARNING")
    logs.setup_from_args(args, default)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``restlake`` console script."""
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        _setup_logging(args)
        return handlers[args.command](args)
    except RestlakeError as exc:
        print_error(exc)
        _log_failure(args, str(exc))
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: say it plainly, redacted, no secrets
        if args.verbose:
            import traceback

            err_console.print(escape(redact(traceback.format_exc())))
        error(redact(trace_summary(exc))[:2000])  # a Java trace's first lines, not its frames
        _log_failure(args, trace_summary(exc))
        return 1


def _log_failure(args: argparse.Namespace, text: str) -> None:
    """A failed command also ends its log file / JSON stream (the console line is not there)."""
    if getattr(args, "log_file", None) or getattr(args, "log_format", "text") == "json":
        logging.getLogger("framework.cli").error("%s failed: %s", args.command, redact(text)[:2000])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
