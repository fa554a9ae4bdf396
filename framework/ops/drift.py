"""Schema drift of one load against its source's contract (pure, no Spark).

The contract is the worksheet's (:func:`framework.ops.worksheet.contract_fields`): the
target's columns that hold this source's values, minus fields that only arrived as
drift, plus the declared fields (primary key, required fields, cursor field). A load
drifts when its records

* carry a field the target lacks (**new**: rescued to ``_rescued_data``, or added
  as a column with ``schema_mode: evolve``);
* carry a contract field whose values no longer fit its column type (**retyped**:
  rescued, the column stays null for those rows);
* lack a contract field in every record (**removed**: present in earlier loads,
  absent from all of this load's). A field present but null is not removed: the
  ``not_null`` and ``max_null_pct`` checks judge that.

A load without records (or without a target yet) says nothing about drift.
Drift never fails a load (``schema_mode: fail`` does that for new fields); it is
recorded in ``api_quality_results`` and raises the ``schema_drift`` notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from framework.ops.quality import AFTER_COMMIT, CheckResult
from framework.schema import RESERVED


@dataclass(frozen=True)
class Drift:
    """The drift of one load: field names (column names) by kind."""

    new: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    retyped: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # field -> (was, now)
    #: a new field's column -> the payload keys that make it, where they are not the column
    #: itself ("_" <- "é", "ü"): what to look for in _rescued_data (API text: Detail only)
    sent_as: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.new or self.removed or self.retyped)

    def results(self) -> list[CheckResult]:
        """One ``schema_drift`` result per changed field (severity ``warn``)."""
        out = [CheckResult("schema_drift", name, None, None, "warn", False,
                           f"{name} is in the contract but absent from every record of this load",
                           AFTER_COMMIT, {"change": "removed"}) for name in self.removed]
        out += [CheckResult("schema_drift", name, None, None, "warn", False,
                            f"{name} is {was} in the target but this load sent {now} values",
                            AFTER_COMMIT, {"change": "retyped", "was": was, "now": now})
                for name, (was, now) in sorted(self.retyped.items())]
        out += [CheckResult("schema_drift", name, None, None, "warn", False,
                            f"{name} is new: the target had no such column", AFTER_COMMIT,
                            {"change": "new", **({"sent_as": list(self.sent_as[name])}
                                                 if name in self.sent_as else {})})
                for name in self.new]
        return out

    def __repr__(self) -> str:
        return (f"Drift(new={list(self.new)}, removed={list(self.removed)}, "
                f"retyped={dict(self.retyped)})")


def absent_fields(target_columns: Iterable[str], declared: Iterable[str],
                  present: Iterable[str]) -> set[str]:
    """Target columns and declared fields that no record of the load carried.

    Only these can be removed fields; the contract then narrows them (a column that
    never held this source's values is not part of its contract). Names are compared
    ignoring case, as Delta's columns and the load's fields are (a declared
    ``updated_at`` is the column ``Updated_At``); a column is named as the target spells it.
    """
    seen = {name.lower() for name in present}
    out: dict[str, str] = {}
    for name in [*target_columns, *declared]:
        if name not in RESERVED and name.lower() not in seen:
            out.setdefault(name.lower(), name)
    return set(out.values())


def detect(*, new: Iterable[str], retyped: Mapping[str, tuple[str, str]],
           absent: Iterable[str], contract: Iterable[str],
           sent_as: Optional[Mapping[str, Iterable[str]]] = None) -> Drift:
    """The drift of a load: its new and retyped fields, and the absent contract fields.

    Args:
        sent_as: a new field's column -> the payload keys that made it.
    """
    contract, new = set(contract), set(new)
    keys = {col: tuple(sorted(found)) for col, found in (sent_as or {}).items()
            if col in new and set(found) != {col}}
    return Drift(new=tuple(sorted(new)), removed=tuple(sorted(set(absent) & contract)),
                 retyped={k: v for k, v in retyped.items() if k not in new}, sent_as=keys)


def no_drift(fields: int) -> CheckResult:
    """The passing ``schema_drift`` row of a load that carried its contract as it was."""
    return CheckResult("schema_drift", None, 0, None, "warn", True,
                       f"no drift: {fields} contract fields, none new, retyped or removed",
                       AFTER_COMMIT)
