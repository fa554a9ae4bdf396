"""The daily ops report: plain sections in, a self-contained HTML page and an XLSX out.

:mod:`framework.ops.monitoring` gathers the data from the warehouse into a :class:`Report`
(no Spark objects past that point); this module renders it:

* HTML with jinja2 (``framework/ops/templates/monitoring_daily.html.j2``): inline CSS, charts
  as base64 PNG images drawn with matplotlib, no external request of any kind;
* XLSX with openpyxl: one sheet per section, typed cells (numbers, booleans, UTC
  datetimes), bold frozen header row, auto filter and sized columns.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from framework.secrets import redact
from framework.untrusted import is_formula_like, printable

COLUMN_TYPES = ("str", "int", "float", "bool", "datetime")


@dataclass
class Section:
    """One table of the report (one sheet of the workbook).

    Attributes:
        key: sheet name and HTML anchor (short, no spaces).
        title: heading.
        columns: ``(name, type)`` pairs, type one of :data:`COLUMN_TYPES`.
        rows: dicts keyed by column name.
        note: a line under the heading (what the section shows, or why it is empty).
        severity: ``ok`` | ``warn`` | ``bad``: colours the section's badge.
    """

    key: str
    title: str
    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    severity: str = "ok"

    def __post_init__(self) -> None:
        for name, ctype in self.columns:
            if ctype not in COLUMN_TYPES:
                raise ValueError(f"section {self.key}: column {name!r} has type {ctype!r}, "
                                 f"expected one of {', '.join(COLUMN_TYPES)}")
        if len(self.key) > 31:
            raise ValueError(f"section key {self.key!r} is longer than an Excel sheet name (31)")

    def __repr__(self) -> str:
        return f"Section({self.key}: {len(self.rows)} rows)"


@dataclass
class Chart:
    """A chart of the HTML page: bars of ``values`` by ``labels``."""

    key: str
    title: str
    labels: list[str]
    values: list[float]
    horizontal: bool = False
    unit: str = ""
    colors: Optional[list[str]] = None
    threshold: Optional[float] = None  # a reference line (e.g. 1.0 = allowed age)

    def top(self, n: int) -> "Chart":
        """The chart of the ``n`` largest values only (ties in their order), its title
        saying so: hundreds of bars in one chart are a smear no label can be read in."""
        if len(self.values) <= n:
            return self
        keep = sorted(sorted(range(len(self.values)), key=lambda i: -self.values[i])[:n])
        return replace(self, title=f"{self.title}: the {n} highest of {len(self.values)}",
                       labels=[self.labels[i] for i in keep],
                       values=[self.values[i] for i in keep],
                       colors=[self.colors[i] for i in keep] if self.colors else None)


@dataclass
class Report:
    """Everything the report shows."""

    generated_at: dt.datetime
    warehouse: str
    sections: list[Section]
    charts: list[Chart] = field(default_factory=list)
    headline: dict[str, Any] = field(default_factory=dict)

    def section(self, key: str) -> Section:
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(f"no section {key!r}; sections: {', '.join(s.key for s in self.sections)}")


# --------------------------------------------------------------------- cells
def cell_text(value: Any, ctype: str) -> str:
    """A value as the HTML table shows it."""
    if value is None:
        return ""
    if ctype == "datetime" and isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    if ctype == "float" and isinstance(value, (int, float)):
        return f"{value:,.2f}"
    if ctype == "int" and isinstance(value, (int, float)):
        return f"{int(value):,}"
    if ctype == "bool":
        return "yes" if value else "no"
    return printable(redact(str(value)))


def excel_value(value: Any, ctype: str) -> Any:
    """A value as an openpyxl cell takes it (Excel has no time zones: naive UTC)."""
    if value is None:
        return None
    if ctype == "datetime" and isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value
    if ctype == "int":
        return int(value)
    if ctype == "float":
        return float(value)
    if ctype == "bool":
        return bool(value)
    # openpyxl refuses control characters in a cell (IllegalCharacterError): escape them.
    return printable(redact(str(value)))


def set_text(cell: Any, value: Any) -> None:
    """Write ``value`` into an openpyxl cell as text, never as a formula.

    openpyxl stores a string starting with ``=`` as a formula; API text such as
    ``=HYPERLINK(...)`` must stay text. A formula-like start also gets Excel's quote
    prefix (what typing a leading apostrophe does), so editing the cell keeps it text.
    """
    cell.value = value
    if isinstance(value, str):
        cell.data_type = "s"
        if is_formula_like(value):
            cell.quotePrefix = True


# --------------------------------------------------------------------- charts
def chart_png(chart: Chart) -> str:
    """A chart as a base64 PNG (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.0), dpi=100)
    try:
        labels = chart.labels or ["(none)"]
        values = chart.values or [0]
        colors = chart.colors or ["#3b82f6"] * len(values)
        if chart.horizontal:
            ax.barh(labels, values, color=colors)
            ax.invert_yaxis()
            if chart.threshold is not None:
                ax.axvline(chart.threshold, color="#ef4444", linestyle="--", linewidth=1)
            ax.set_xlabel(chart.unit)
        else:
            ax.bar(labels, values, color=colors)
            if chart.threshold is not None:
                ax.axhline(chart.threshold, color="#ef4444", linestyle="--", linewidth=1)
            ax.set_ylabel(chart.unit)
            ax.tick_params(axis="x", labelrotation=30)
        ax.set_title(chart.title, fontsize=11)
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ---------------------------------------------------------------------- HTML
def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("framework.ops", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["cell"] = cell_text
    template = env.get_template("monitoring_daily.html.j2")
    charts = [{"key": c.key, "title": c.title, "png": chart_png(c)} for c in report.charts]
    return template.render(report=report, charts=charts,
                           generated=report.generated_at.strftime("%Y-%m-%d %H:%M:%SZ"))


# ---------------------------------------------------------------------- XLSX
_FORMATS = {"datetime": "yyyy-mm-dd hh:mm:ss", "float": "#,##0.00", "int": "#,##0"}


def write_xlsx(report: Report, path: str | Path) -> Path:
    """Write the workbook: a summary sheet, then one sheet per section."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    summary = wb.active
    summary.title = "summary"
    summary.append(["restlake daily ops report"])
    summary["A1"].font = Font(bold=True, size=14)
    summary.append(["generated at (UTC)", excel_value(report.generated_at, "datetime")])
    summary["B2"].number_format = _FORMATS["datetime"]
    summary.append(["warehouse", None])
    set_text(summary.cell(row=summary.max_row, column=2), excel_value(report.warehouse, "str"))
    for key, value in report.headline.items():
        summary.append([key, None])
        set_text(summary.cell(row=summary.max_row, column=2),
                 value if isinstance(value, (int, float)) else excel_value(value, "str"))
    summary.append([])
    summary.append(["section", "rows", "note"])
    for s in report.sections:
        summary.append([s.key, len(s.rows), None])
        set_text(summary.cell(row=summary.max_row, column=3), excel_value(s.note, "str"))
    summary.column_dimensions["A"].width = 28
    summary.column_dimensions["B"].width = 22
    summary.column_dimensions["C"].width = 80

    header_fill = PatternFill("solid", fgColor="1F2937")
    for s in report.sections:
        ws = wb.create_sheet(s.key)
        names = [n for n, _ in s.columns]
        ws.append([f"{n} (UTC)" if t == "datetime" else n for n, t in s.columns])
        for cell in ws[1]:
            cell.font = Font(bold=True, color="FFFFFF")
            cell.fill = header_fill
        for row in s.rows:
            ws.append([None] * len(s.columns))
            for col_idx, (n, t) in enumerate(s.columns, start=1):
                set_text(ws.cell(row=ws.max_row, column=col_idx), excel_value(row.get(n), t))
        widths = [len(n) + 2 for n in names]
        for col_idx, (name, ctype) in enumerate(s.columns, start=1):
            fmt = _FORMATS.get(ctype)
            for (cell,) in ws.iter_rows(min_row=2, min_col=col_idx, max_col=col_idx):
                if fmt:
                    cell.number_format = fmt
                width = 20 if ctype == "datetime" else len(str(cell.value or ""))
                widths[col_idx - 1] = max(widths[col_idx - 1], min(width + 2, 80))
            ws.column_dimensions[get_column_letter(col_idx)].width = widths[col_idx - 1]
        ws.freeze_panes = "A2"
        if s.rows:
            ws.auto_filter.ref = ws.dimensions
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    wb.save(out)
    return out
