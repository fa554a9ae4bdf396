"""Compiled parts of the per-record hot path, each with a pure-Python twin.

``shape_direct`` is the direct path of :meth:`framework.schema.RowShaper.shape_page` in C
(``_shape.c``): the record's canonical JSON through the same ``orjson.dumps`` call, its
SHA-256 through OpenSSL in one call instead of a hash object per record, and the staged
line built in one buffer. It is built when restlake is installed from source with a C
compiler and OpenSSL's headers; where it is not (or with ``RESTLAKE_NATIVE=0`` in the
environment) the Python path does the same work, line for line the same bytes.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

shape_direct: Optional[Callable[..., Any]] = None

if os.environ.get("RESTLAKE_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off"):
    try:
        from framework.native._shape import shape_direct
    except ImportError:  # not built here: the Python path
        shape_direct = None


def available() -> bool:
    """Whether the compiled shaping path is in use."""
    return shape_direct is not None
