"""The garbage collector's pace while windows are fetched (no Spark).

Parsing one page of 1 000 records makes some 3 000 dicts and lists, alive until the page
is staged. At CPython's default pace (a young collection every 700 new containers, an
older one every 10 of those), each page runs several young collections that walk its
live records and move them to older generations, and the older collections then walk
pages that are gone a moment later. None of it frees anything: the records are freed by
their reference counts once staged. Measured on the fetch stack (100k records, page 1 000,
eight windows at once, in a process holding the CLI's imports), the process spent
15.7-18.5 µs of CPU per record at the default pace and 13.0-14.9 µs with a young
collection every 10 000 containers (bench/README.md, "The collector's pace").

:func:`pace_for_pages` raises the first threshold to :data:`YOUNG_THRESHOLD`, once per
process, when a fetch stack is built. It never lowers a threshold the process set
itself, and leaves a disabled collector disabled. Cyclic garbage is still collected,
a little later; memory held by it is bounded by the threshold (a few MB at most).
"""

from __future__ import annotations

import gc

#: new containers between two young collections while windows are fetched
YOUNG_THRESHOLD = 10_000


def pace_for_pages() -> None:
    """Collect young objects every :data:`YOUNG_THRESHOLD` containers (never more often
    than the process already does); the older generations keep their thresholds."""
    young, middle, old = gc.get_threshold()
    if 0 < young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
