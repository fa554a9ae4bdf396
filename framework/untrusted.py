"""Text that came from an API (error bodies, field names, values) made safe for where it is shown.

An API controls what it returns, so its text is data everywhere restlake shows it:

* :func:`printable` — control characters (ESC sequences, NUL, bell, C1 codes) shown as
  ``\\x1b``-style escapes instead of being sent to a terminal, a workbook or a message;
* :func:`spreadsheet_text` and :func:`is_formula_like` — a cell that a spreadsheet would
  read as a formula (``=HYPERLINK(...)``, ``+``, ``-``, ``@``, a leading tab or CR) is
  neutralised the way OWASP recommends for CSV injection: a leading apostrophe.

Rich markup and HTML escaping live with their renderers (``framework.cli.console``, the
report's Jinja autoescape); they call :func:`printable` first.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls except tab and newline, DEL, and the C1 controls (0x80-0x9f: CSI is 0x9b).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_NO_NEWLINES = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
#: First characters that make a spreadsheet evaluate a cell (ASCII and full-width forms).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group(0)):02x}"


def printable(value: Any, *, newlines: bool = True) -> str:
    """``value`` as text with every control character written as a visible ``\\xNN`` escape.

    Args:
        newlines: keep ``\\n`` (multi-line messages); ``False`` escapes it too (one line).
    """
    text = "" if value is None else str(value)
    return (_CONTROL if newlines else _CONTROL_NO_NEWLINES).sub(_escape, text)


def is_formula_like(text: str) -> bool:
    """True when a spreadsheet would read ``text`` as a formula (or a DDE payload)."""
    return bool(text) and text.startswith(FORMULA_TRIGGERS)


def spreadsheet_text(value: Any) -> str:
    """Cell text for CSV: printable, and an apostrophe before a formula-like start (OWASP)."""
    text = printable(value)
    return "'" + text if is_formula_like(text) else text
