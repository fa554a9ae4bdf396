"""Numeric command-line values with the bounds their config fields have.

A value out of bounds is refused by the parser, naming the option (``argument --days:
must be at least 1, got -3``), before any table is read or written: a ``--timeout -1``
once logged every source as down, a ``--lease-minutes 0`` made a claim that another
runner could take at once.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Optional, Union

Number = Union[int, float]


def number(kind: type, *, minimum: Optional[Number] = None, maximum: Optional[Number] = None,
           above: Optional[Number] = None) -> Callable[[str], Number]:
    """An argparse ``type``: ``kind`` (``int`` or ``float``) parsed from the text, finite,
    ``>= minimum``, ``> above`` and ``<= maximum`` where given."""
    what = "a whole number" if kind is int else "a number"

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"must be more than {above:g}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


#: a TCP port to bind
PORT = number(int, minimum=1, maximum=65535)
#: a count of days of history
DAYS = number(int, minimum=1)
#: rows to show
LIMIT = number(int, minimum=1)
#: a claim's lease, in minutes: at least a config's smallest ``limits.lease_s`` (30 s)
LEASE_MINUTES = number(float, minimum=0.5)
#: a request timeout, in seconds, as ``health.timeout_s`` allows
TIMEOUT_S = number(float, above=0, maximum=600)
#: an HTTP status code
STATUS = number(int, minimum=100, maximum=599)
