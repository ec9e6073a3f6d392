"""Small inline-SVG charts for the reports and the dashboard: no JavaScript, no dependency, deterministic.

Each function returns one ``<svg>`` element as text, ready to drop into an HTML page (or save as a
``.svg`` file): axes with ticks, a legend, and a ``<title>`` on every mark, which browsers show on hover.
Every text that reaches the SVG (titles, column names, category values, series names) is escaped, since
column names and categories come from user data. The same input always gives the same bytes.

- :func:`line_chart`: several series over ordered x labels (windows), with an optional horizontal goal
  line and a shaded band per series (a confidence interval); a log scale for quantities such as PSI.
- :func:`bar_chart`: grouped bars, one group per x label, one bar per series.
- :func:`histogram`: two distributions of a numeric column side by side, as shares per bin.
- :func:`category_bars`: two distributions of a categorical column, as pairs of bars per category.
- :func:`xy_chart`: lines or points over a numeric x axis, with reference lines and a marked point
  (a learning curve, a precision–recall curve, a reliability curve, residuals).
- :func:`missing_map`: where values are missing, as a grid of columns by blocks of rows.
- :func:`bar_list`: one horizontal bar per label, as a ranking (feature importance).

>>> svg = line_chart(["w1", "w2", "w3"], [Series("PSI age", [0.05, 0.1, 0.4])], title="Drift", goal=0.2)
>>> svg.startswith("<svg") and "<title>PSI age · w3: 0.4</title>" in svg
True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np

__all__ = ["PALETTE", "Marker", "Series", "XYSeries", "bar_chart", "bar_list", "category_bars", "histogram",
           "line_chart", "missing_map", "xy_chart"]

# Okabe–Ito based: told apart by readers with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#999933", "#882255")
_GOAL_COLOUR = "#C00000"
_AXIS_COLOUR = "#444444"
_GRID_COLOUR = "#E3E3E3"
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="11"'
_CHAR_PX = 6.2  # the mean width of one 11px character: legend entries are laid out with it
_MAX_X_LABELS = 12
_LEGEND_ROW = 16  # px per legend row; the legend wraps onto as many rows as its entries need
_RIGHT = 56  # room for the goal line's label
_LOG_DECADES = 4


@dataclass(frozen=True)
class Series:
    """One named series: a value per x label (None: no value there), optionally a band from ``low`` to ``high``.

    >>> Series("labeled accuracy", [0.81, None, 0.77], low=[0.75, None, 0.70], high=[0.86, None, 0.83]).name
    'labeled accuracy'
    """

    name: str
    values: Sequence[float | None]
    low: Sequence[float | None] | None = None
    high: Sequence[float | None] | None = None
    dashed: bool = False


# -- the public charts ---------------------------------------------------------------------------
def line_chart(x_labels: Sequence[str], series: Sequence[Series], *, title: str, y_label: str = "",
               goal: float | None = None, goal_label: str = "goal", log_y: bool = False, percent: bool = False,
               width: int = 640, height: int = 280) -> str:
    """Lines over ordered ``x_labels``, one per series, with markers, optional bands and a goal line.

    ``log_y`` draws the y axis in powers of ten over at most four decades (smaller values, 0 included,
    sit on the axis; their hover text keeps the true value). ``percent`` writes values as percentages.

    >>> svg = line_chart(["1", "2"], [Series("p99 ms", [3.0, 4.5])], title="Latency", y_label="ms")
    >>> svg.count("<circle")
    2
    """
    n = len(x_labels)
    for s in series:
        _check_lengths("line_chart", s, n)
    values = [v for s in series for seq in (s.values, s.low or (), s.high or ()) for v in seq]
    scale = _YScale.fit([*values, goal], log=log_y, percent=percent)
    legend, top = _legend(width, series, goal, goal_label)
    frame = _Frame(width, height, left=_left_margin(scale), bottom=_bottom_margin(x_labels), top=top)
    xs = _point_positions(frame, n)
    parts = [_open(width, height, title), _title(title), *legend]
    parts += _y_axis(frame, scale, y_label) + _x_axis(frame, x_labels, xs)
    if not any(_finite(v) for v in values):
        parts.append(_empty_note(frame, "no values to draw yet"))
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        if s.low is not None and s.high is not None:
            parts += _bands(frame, scale, xs, s, colour)
        parts += _line(frame, scale, xs, s, colour, x_labels)
    if goal is not None and _finite(goal):
        parts += _goal_line(frame, scale, goal, goal_label)
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(x_labels: Sequence[str], series: Sequence[Series], *, title: str, y_label: str = "",
              goal: float | None = None, goal_label: str = "limit", percent: bool = False, width: int = 640,
              height: int = 280) -> str:
    """Grouped bars: for each x label, one bar per series (a missing value leaves its slot empty).

    >>> svg = bar_chart(["w1", "w2"], [Series("missing", [0.0, 0.2]), Series("unknown", [0.1, 0.0])],
    ...                 title="Quality", percent=True)
    >>> svg.count('class="mark bar"')
    4
    """
    n = len(x_labels)
    for s in series:
        _check_lengths("bar_chart", s, n)
    values = [v for s in series for v in s.values]
    scale = _YScale.fit([0.0, *values, goal], log=False, percent=percent)
    legend, top = _legend(width, series, goal, goal_label)
    frame = _Frame(width, height, left=_left_margin(scale), bottom=_bottom_margin(x_labels), top=top)
    slot = frame.plot_width / max(n, 1)
    centres = [frame.left + slot * (i + 0.5) for i in range(n)]
    parts = [_open(width, height, title), _title(title), *legend]
    parts += _y_axis(frame, scale, y_label) + _x_axis(frame, x_labels, centres)
    if not any(_finite(v) for v in values):
        parts.append(_empty_note(frame, "no values to draw yet"))
    bar = slot * 0.8 / max(len(series), 1)
    base = scale.y(frame, max(scale.lo, 0.0))
    for j, s in enumerate(series):
        colour = PALETTE[j % len(PALETTE)]
        for i, v in enumerate(s.values):
            if not _finite(v):
                continue
            x = centres[i] - slot * 0.4 + j * bar
            top = scale.y(frame, v)  # type: ignore[arg-type]
            y, h = min(top, base), max(abs(base - top), 0.5)  # a zero still shows as a hairline to hover on
            parts.append(f'<rect class="mark bar" x="{x:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{_esc(s.name)} · {_esc(x_labels[i])}: '
                         f'{scale.text(v)}</title></rect>')  # type: ignore[arg-type]
    if goal is not None and _finite(goal):
        parts += _goal_line(frame, scale, goal, goal_label)
    parts.append("</svg>")
    return "\n".join(parts)


def histogram(reference: Iterable[Any], current: Iterable[Any], *, title: str,
              names: tuple[str, str] = ("reference", "current"), bins: int = 20, width: int = 640,
              height: int = 260) -> str:
    """Two distributions of one numeric column, side by side: the share of each sample's values per bin.

    Shares, not counts, so samples of different sizes compare. Bins span both samples between their
    0.5% and 99.5% quantiles (values beyond fall in the end bins, so one outlier cannot squash the
    rest); integers over a short span get one bin per integer. Missing values are left out.

    >>> svg = histogram([1.0, 2.0, 2.5, 3.0], [2.0, 3.5, 4.0], title="age")
    >>> svg.count('class="mark bar"') > 0
    True
    """
    ref, cur = _numbers(reference), _numbers(current)
    edges, per_integer = _edges(ref, cur, bins)
    shares = [_shares(ref, edges), _shares(cur, edges)]
    counts = (len(ref), len(cur))
    scale = _YScale.fit([0.0, *shares[0], *shares[1]], log=False, percent=True)
    labels = [_short(edges[i] + 0.5) if per_integer else _interval(i, edges) for i in range(len(edges) - 1)]
    ticks = _edge_ticks(edges)
    legend, top = _legend(width, [Series(f"{names[k]} (n={counts[k]})", []) for k in range(2)], None, "")
    frame = _Frame(width, height, left=_left_margin(scale), bottom=40, top=top)
    slot = frame.plot_width / max(len(labels), 1)
    parts = [_open(width, height, title), _title(title), *legend]
    parts += _y_axis(frame, scale, "share of rows")
    parts += _x_axis_numeric(frame, edges, ticks)
    if not ref and not cur:
        parts.append(_empty_note(frame, "no numeric values in either sample"))
    base = scale.y(frame, 0.0)
    for k in range(2):
        colour = PALETTE[k]
        for i, share in enumerate(shares[k]):
            x = frame.left + slot * i + 1 + k * (slot - 2) / 2
            top = scale.y(frame, share)
            h = max(base - top, 0.5)
            parts.append(f'<rect class="mark bar" x="{x:.1f}" y="{base - h:.1f}" width="{max((slot - 2) / 2, 1):.1f}"'
                         f' height="{h:.1f}" fill="{colour}" fill-opacity="0.85"><title>{_esc(names[k])}: '
                         f'{share:.1%} of {counts[k]} in {_esc(labels[i])}</title></rect>')
    parts.append("</svg>")
    return "\n".join(parts)


def category_bars(reference: Iterable[Any], current: Iterable[Any], *, title: str,
                  names: tuple[str, str] = ("reference", "current"), top: int = 10, width: int = 640) -> str:
    """Two distributions of one categorical column: per category, a pair of horizontal bars of shares.

    The ``top`` categories by their larger share are drawn (a category only one sample holds included);
    the rest are summed as ``(other)``. Missing values are left out.

    >>> svg = category_bars(["a", "a", "b"], ["b", "c"], title="plan")
    >>> svg.count('class="mark bar"')
    6
    """
    ref, cur = _categories(reference), _categories(current)
    counts = (sum(ref.values()), sum(cur.values()))
    share = [{k: v / counts[i] for k, v in c.items()} if counts[i] else {} for i, c in enumerate((ref, cur))]
    order = sorted(set(ref) | set(cur), key=lambda k: (-max(share[0].get(k, 0.0), share[1].get(k, 0.0)), k))
    shown, rest = order[:top], order[top:]
    rows = [(k, share[0].get(k, 0.0), share[1].get(k, 0.0)) for k in shown]
    if rest:
        rows.append((f"(other: {len(rest)})", sum(share[0].get(k, 0.0) for k in rest),
                     sum(share[1].get(k, 0.0) for k in rest)))
    row_h = 22
    label_w = min(180, 12 + _CHAR_PX * max((len(k) for k, *_ in rows), default=4))
    legend, top = _legend(width, [Series(f"{names[k]} (n={counts[k]})", []) for k in range(2)], None, "")
    height = int(top + 30 + row_h * max(len(rows), 1))
    frame = _Frame(width, height, left=label_w, bottom=30, top=top)
    top_share = max([s for _, a, b in rows for s in (a, b)], default=0.0)
    scale = _XScale.fit(top_share)
    parts = [_open(width, height, title), _title(title), *legend]
    parts += _x_axis_shares(frame, scale)
    if not rows:
        parts.append(_empty_note(frame, "no values in either sample"))
    for r, (name, *pair) in enumerate(rows):
        y = frame.top + r * row_h
        label = name if len(name) <= 28 else name[:27] + "…"
        parts.append(f'<text x="{frame.left - 6:.1f}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end" '
                     f'fill="{_AXIS_COLOUR}">{_esc(label)}<title>{_esc(name)}</title></text>')
        for k, value in enumerate(pair):
            w = max(scale.x(frame, value) - frame.left, 0.5)
            parts.append(f'<rect class="mark bar" x="{frame.left:.1f}" y="{y + 2 + k * 9:.1f}" width="{w:.1f}" '
                         f'height="8" fill="{PALETTE[k]}"><title>{_esc(names[k])}: {_esc(name)} {value:.1%}'
                         f'</title></rect>')
    parts.append("</svg>")
    return "\n".join(parts)


@dataclass(frozen=True)
class XYSeries:
    """One named series of (x, y) points for :func:`xy_chart`: a line, points, or both.

    >>> XYSeries("out of fold", [500, 1000, 2000], [0.61, 0.64, 0.66], mode="both").mode
    'both'
    """

    name: str
    x: Sequence[float]
    y: Sequence[float]
    mode: str = "line"  # line | points | both
    dashed: bool = False


@dataclass(frozen=True)
class Marker:
    """A point marked on an :func:`xy_chart` (a ring and a label), such as the chosen operating point."""

    x: float
    y: float
    label: str


def xy_chart(series: Sequence[XYSeries], *, title: str, x_label: str = "", y_label: str = "",
             marker: Marker | None = None, hlines: Sequence[tuple[float, str]] = (),
             vlines: Sequence[tuple[float, str]] = (), diagonal: bool = False, log_x: bool = False,
             percent: bool = False, width: int = 640, height: int = 300) -> str:
    """Series over a numeric x axis (lines, scatter points or both), with reference lines and a marked point.

    ``hlines`` and ``vlines`` are (value, label) reference lines drawn as the goal is (a requirement);
    ``diagonal`` draws y = x (a perfectly calibrated model); ``log_x`` draws x in powers of ten.

    >>> svg = xy_chart([XYSeries("precision", [0.2, 0.6, 0.9], [0.9, 0.8, 0.6])], title="PR",
    ...                marker=Marker(0.6, 0.8, "threshold 0.4"), vlines=[(0.6, "recall ≥ 0.6")])
    >>> svg.count('class="mark line"'), svg.count('class="mark marker"'), svg.count('class="goal"')
    (1, 1, 1)
    """
    for s in series:
        if len(s.x) != len(s.y):
            raise ValueError(f"xy_chart: series '{s.name}' has {len(s.x)} x values and {len(s.y)} y values; "
                             "give one y per x")
    xs_all = [v for s in series for v in s.x] + [v for v, _ in vlines] + ([marker.x] if marker else [])
    ys_all = [v for s in series for v in s.y] + [v for v, _ in hlines] + ([marker.y] if marker else [])
    if diagonal:
        xs_all, ys_all = xs_all + ys_all, ys_all + xs_all
    x_scale = _YScale.fit(xs_all, log=log_x, percent=False)
    y_scale = _YScale.fit(ys_all, log=False, percent=percent)
    legend, top = _legend(width, [Series(s.name, [], dashed=s.dashed) for s in series], None, "")
    frame = _Frame(width, height, left=_left_margin(y_scale), bottom=42, top=top)
    parts = [_open(width, height, title), _title(title), *legend, *_y_axis(frame, y_scale, y_label)]
    parts += _x_axis_scaled(frame, x_scale, x_label)
    if not any(_finite(x) and _finite(y) for s in series for x, y in zip(s.x, s.y, strict=True)):
        parts.append(_empty_note(frame, "no values to draw yet"))
    if diagonal:
        lo, hi = max(x_scale.lo, y_scale.lo), min(x_scale.hi, y_scale.hi)
        parts.append(f'<line class="reference" x1="{_x_of(frame, x_scale, lo):.1f}" y1="{y_scale.y(frame, lo):.1f}" '
                     f'x2="{_x_of(frame, x_scale, hi):.1f}" y2="{y_scale.y(frame, hi):.1f}" stroke="#999999" '
                     'stroke-dasharray="3 3"><title>perfectly calibrated: y = x</title></line>')
    for i, s in enumerate(series):
        parts += _xy_series(frame, x_scale, y_scale, s, PALETTE[i % len(PALETTE)])
    for value, label in hlines:
        if _finite(value):
            parts += _goal_line(frame, y_scale, value, label)
    for value, label in vlines:
        if _finite(value):
            x = _x_of(frame, x_scale, value)
            parts.append(f'<line class="goal" x1="{x:.1f}" y1="{frame.top:.1f}" x2="{x:.1f}" '
                         f'y2="{frame.plot_bottom:.1f}" stroke="{_GOAL_COLOUR}" stroke-width="1.5" '
                         f'stroke-dasharray="5 3"><title>{_esc(label)}: {x_scale.text(value)}</title></line>')
            parts.append(f'<text x="{x + 3:.1f}" y="{frame.top + 10:.1f}" fill="{_GOAL_COLOUR}">{_esc(label)}</text>')
    if marker is not None and _finite(marker.x) and _finite(marker.y):
        mx, my = _x_of(frame, x_scale, marker.x), y_scale.y(frame, marker.y)
        anchor = "end" if mx > frame.left + frame.plot_width * 0.7 else "start"
        dx = -9 if anchor == "end" else 9
        parts.append(f'<circle class="mark marker" cx="{mx:.1f}" cy="{my:.1f}" r="6" fill="none" '
                     f'stroke="{_GOAL_COLOUR}" stroke-width="2.5"><title>{_esc(marker.label)}: '
                     f'({x_scale.text(marker.x)}, {y_scale.text(marker.y)})</title></circle>')
        parts.append(f'<text x="{mx + dx:.1f}" y="{my - 8:.1f}" text-anchor="{anchor}" font-weight="600" '
                     f'fill="{_GOAL_COLOUR}">{_esc(marker.label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def missing_map(columns: Sequence[str], shares: Sequence[Sequence[float]], *, title: str,
                block_rows: int, rows: int | None = None, width: int = 640) -> str:
    """Where values are missing: one grid row per column, one cell per block of ``block_rows`` rows.

    ``shares[c][b]`` is the share of rows of block ``b`` missing in column ``c``; a cell's colour deepens
    with it, and a block without a missing value stays pale, so a column that is missing together with
    another, or only in part of the table, shows as a pattern. ``rows`` (the table's row count) ends the
    last block where the table ends.

    >>> svg = missing_map(["age", "income"], [[0.0, 0.5], [0.0, 0.0]], title="Missing", block_rows=100)
    >>> svg.count('class="mark cell"')
    4
    """
    for name, row in zip(columns, shares, strict=True):
        if len(row) != len(shares[0]):
            raise ValueError(f"missing_map: column '{name}' has {len(row)} blocks, the first column "
                             f"{len(shares[0])}; give every column the same blocks")
    blocks = len(shares[0]) if shares else 0
    rows = blocks * block_rows if rows is None else rows
    label_w = min(180, 12 + _CHAR_PX * max((len(c) for c in columns), default=4))
    row_h = 16
    height = int(46 + 34 + row_h * max(len(columns), 1))
    frame = _Frame(width, height, left=label_w, bottom=34, top=46, right=16)
    cell = frame.plot_width / max(blocks, 1)
    parts = [_open(width, height, title), _title(title)]
    parts.append(f'<g class="legend"><rect x="8" y="24" width="12" height="10" fill="{_missing_fill(0.0)}" '
                 f'stroke="#cccccc"/><text x="24" y="33" fill="#222222">none missing</text>'
                 f'<rect x="112" y="24" width="12" height="10" fill="{_missing_fill(0.5)}"/>'
                 f'<text x="128" y="33" fill="#222222">half</text><rect x="168" y="24" width="12" height="10" '
                 f'fill="{_missing_fill(1.0)}"/><text x="184" y="33" fill="#222222">all of the block</text></g>')
    if not columns or not blocks:
        parts.append(_empty_note(frame, "no columns to draw"))
    for r, (name, row) in enumerate(zip(columns, shares, strict=True)):
        y = frame.top + r * row_h
        label = name if len(name) <= 28 else name[:27] + "…"
        parts.append(f'<text x="{frame.left - 6:.1f}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end" '
                     f'fill="{_AXIS_COLOUR}">{_esc(label)}<title>{_esc(name)}</title></text>')
        for b, share in enumerate(row):
            first, last = b * block_rows + 1, min((b + 1) * block_rows, rows)
            parts.append(f'<rect class="mark cell" x="{frame.left + b * cell:.1f}" y="{y + 1:.1f}" '
                         f'width="{max(cell - 1, 1):.1f}" height="{row_h - 2}" fill="{_missing_fill(share)}">'
                         f'<title>{_esc(name)} · rows {first:,}–{last:,}: {share:.1%} missing</title></rect>')
    y = frame.top + row_h * len(columns) + 14
    parts.append(f'<text x="{frame.left:.1f}" y="{y:.1f}" fill="{_AXIS_COLOUR}">row 1</text>')
    parts.append(f'<text x="{frame.left + frame.plot_width:.1f}" y="{y:.1f}" text-anchor="end" '
                 f'fill="{_AXIS_COLOUR}">row {rows:,} ({block_rows:,} rows per cell)</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def bar_list(labels: Sequence[str], values: Sequence[float], *, title: str, x_label: str = "",
             percent: bool = False, width: int = 640) -> str:
    """One horizontal bar per label, in the order given (a ranking such as feature importance).

    A negative value draws left of zero (a column whose shuffling helped, by chance).

    >>> svg = bar_list(["age", "state"], [0.12, 0.03], title="Importance")
    >>> svg.count('class="mark bar"')
    2
    """
    if len(labels) != len(values):
        raise ValueError(f"bar_list: {len(labels)} labels and {len(values)} values; give one value per label")
    finite = [float(v) for v in values if _finite(v)]
    scale = _YScale.fit([0.0, *finite], log=False, percent=percent)
    row_h = 20
    label_w = min(180, 12 + _CHAR_PX * max((len(str(k)) for k in labels), default=4))
    height = int(30 + 42 + row_h * max(len(labels), 1))
    frame = _Frame(width, height, left=label_w, bottom=42, top=30)
    parts = [_open(width, height, title), _title(title), *_x_axis_scaled(frame, scale, x_label, grid=True)]
    if not finite:
        parts.append(_empty_note(frame, "no values to draw yet"))
    zero = _x_of(frame, scale, 0.0)
    for r, (name, value) in enumerate(zip(labels, values, strict=True)):
        y = frame.top + r * row_h
        text = str(name) if len(str(name)) <= 28 else str(name)[:27] + "…"
        parts.append(f'<text x="{frame.left - 6:.1f}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end" '
                     f'fill="{_AXIS_COLOUR}">{_esc(text)}<title>{_esc(name)}</title></text>')
        if not _finite(value):
            continue
        end = _x_of(frame, scale, value)
        x, w = min(zero, end), max(abs(end - zero), 0.5)
        parts.append(f'<rect class="mark bar" x="{x:.1f}" y="{y + 3:.1f}" width="{w:.1f}" height="{row_h - 6}" '
                     f'fill="{PALETTE[0]}"><title>{_esc(name)}: {scale.text(value)}</title></rect>')
    parts.append("</svg>")
    return "\n".join(parts)


# -- frame and scales ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Frame:
    """The chart's size and the plot area inside its margins."""

    width: int
    height: int
    left: float
    bottom: float
    top: float = 46
    right: float = _RIGHT

    @property
    def plot_width(self) -> float:
        return max(self.width - self.left - self.right, 10.0)

    @property
    def plot_bottom(self) -> float:
        return self.height - self.bottom

    @property
    def plot_height(self) -> float:
        return max(self.plot_bottom - self.top, 10.0)


@dataclass(frozen=True)
class _YScale:
    lo: float
    hi: float
    ticks: tuple[float, ...]
    log: bool
    percent: bool
    decimals: int

    @classmethod
    def fit(cls, values: Iterable[Any], *, log: bool, percent: bool) -> _YScale:
        finite = [float(v) for v in values if _finite(v)]
        if log:
            positive = [v for v in finite if v > 0] or [1.0]
            hi_exp = math.ceil(math.log10(max(positive)))
            # At most _LOG_DECADES below the top: smaller values sit on the axis, their hover text exact.
            lo_exp = max(math.floor(math.log10(min(positive))), hi_exp - _LOG_DECADES)
            hi_exp = max(hi_exp, lo_exp + 1)
            ticks = tuple(10.0 ** e for e in range(lo_exp, hi_exp + 1))
            return cls(ticks[0], ticks[-1], ticks, True, percent, max(0, -lo_exp))
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        step = _nice_step(lo, hi)
        start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
        if end <= start:
            end = start + step
        count = int(round((end - start) / step))
        ticks = tuple(round(start + i * step, 12) for i in range(count + 1))
        exponent = math.floor(math.log10(step) + 1e-9)
        # A step of 2.5 x 10^e needs one digit more than 10^e does (0.25, not 0.2), unless it is whole.
        decimals = max(0, -exponent) + (1 if round(step / 10 ** exponent, 6) == 2.5 and exponent < 1 else 0)
        return cls(ticks[0], ticks[-1], ticks, False, percent, decimals)

    def y(self, frame: _Frame, value: float) -> float:
        if self.log:
            v = math.log10(max(value, self.lo))
            share = (v - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        else:
            share = (value - self.lo) / (self.hi - self.lo)
        return frame.plot_bottom - min(max(share, 0.0), 1.0) * frame.plot_height

    def tick_text(self, value: float) -> str:
        if self.percent:
            return f"{value * 100:.{max(0, self.decimals - 2)}f}%"
        if self.log:
            return f"{value:g}"
        return f"{value:.{self.decimals}f}"

    def text(self, value: float) -> str:
        """A value for hover text: more digits than a tick."""
        return f"{value:.1%}" if self.percent else f"{value:.4g}"


@dataclass(frozen=True)
class _XScale:
    hi: float
    ticks: tuple[float, ...]

    @classmethod
    def fit(cls, top: float) -> _XScale:
        step = _nice_step(0.0, max(top, 0.01), count=4)
        count = max(1, math.ceil(max(top, 0.01) / step - 1e-9))
        return cls(count * step, tuple(round(i * step, 12) for i in range(count + 1)))

    def x(self, frame: _Frame, value: float) -> float:
        return frame.left + min(max(value / self.hi, 0.0), 1.0) * frame.plot_width


def _nice_step(lo: float, hi: float, count: int = 5) -> float:
    """A step of 1, 2, 2.5 or 5 times a power of ten that cuts [lo, hi] into about ``count`` ticks."""
    span = hi - lo if hi > lo else (abs(hi) or 1.0)
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude * (1 + 1e-9):
            return factor * magnitude
    return 10 * magnitude


# -- pieces --------------------------------------------------------------------------------------
def _open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" aria-label="{_esc(title)}" {_FONT}>')


def _title(title: str) -> str:
    return (f'<title>{_esc(title)}</title>\n<text x="8" y="16" font-size="13" font-weight="600" '
            f'fill="#222222">{_esc(title)}</text>')


def _legend(width: int, series: Sequence[Series], goal: float | None, goal_label: str) -> tuple[list[str], float]:
    """The legend's marks, wrapped onto rows, and where the plot may start below them."""
    entries = [(s.name, PALETTE[i % len(PALETTE)], ' stroke-dasharray="4 3"' if s.dashed else "", "3")
               for i, s in enumerate(series)]
    if goal is not None and _finite(goal) and goal_label:
        entries.append((goal_label, _GOAL_COLOUR, ' stroke-dasharray="5 3"', "1.5"))
    parts, x, y = [], 8.0, 32.0
    for name, colour, dash, stroke in entries:
        w = 22 + _CHAR_PX * len(name)
        if x + w > width - 8 and x > 8:
            x, y = 8.0, y + _LEGEND_ROW
        parts.append(f'<g class="legend"><line x1="{x:.1f}" y1="{y - 4}" x2="{x + 14:.1f}" y2="{y - 4}" '
                     f'stroke="{colour}" stroke-width="{stroke}"{dash}/><text x="{x + 18:.1f}" y="{y}" '
                     f'fill="#222222">{_esc(name)}</text></g>')
        x += w + 10
    return parts, y + 14


def _y_axis(frame: _Frame, scale: _YScale, label: str) -> list[str]:
    parts = []
    for t in scale.ticks:
        y = scale.y(frame, t)
        parts.append(f'<line x1="{frame.left:.1f}" y1="{y:.1f}" x2="{frame.left + frame.plot_width:.1f}" '
                     f'y2="{y:.1f}" stroke="{_GRID_COLOUR}"/>')
        parts.append(f'<text x="{frame.left - 5:.1f}" y="{y + 4:.1f}" text-anchor="end" fill="{_AXIS_COLOUR}">'
                     f"{scale.tick_text(t)}</text>")
    parts.append(f'<line class="axis" x1="{frame.left:.1f}" y1="{frame.top:.1f}" x2="{frame.left:.1f}" '
                 f'y2="{frame.plot_bottom:.1f}" stroke="{_AXIS_COLOUR}"/>')
    if label:
        cy = frame.top + frame.plot_height / 2
        parts.append(f'<text x="12" y="{cy:.1f}" text-anchor="middle" transform="rotate(-90 12 {cy:.1f})" '
                     f'fill="{_AXIS_COLOUR}">{_esc(label)}</text>')
    return parts


def _x_axis(frame: _Frame, labels: Sequence[str], xs: Sequence[float]) -> list[str]:
    y = frame.plot_bottom
    parts = [f'<line class="axis" x1="{frame.left:.1f}" y1="{y:.1f}" x2="{frame.left + frame.plot_width:.1f}" '
             f'y2="{y:.1f}" stroke="{_AXIS_COLOUR}"/>']
    every = max(1, math.ceil(len(labels) / _MAX_X_LABELS))
    rotate = max((len(str(s)) for s in labels), default=0) > 6
    for i, (label, x) in enumerate(zip(labels, xs, strict=True)):
        if i % every:
            continue
        parts.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x:.1f}" y2="{y + 4:.1f}" stroke="{_AXIS_COLOUR}"/>')
        text = _esc(label if len(label) <= 16 else label[:15] + "…")
        if rotate:
            parts.append(f'<text x="{x:.1f}" y="{y + 14:.1f}" text-anchor="end" transform="rotate(-30 {x:.1f} '
                         f'{y + 14:.1f})" fill="{_AXIS_COLOUR}">{text}</text>')
        else:
            parts.append(f'<text x="{x:.1f}" y="{y + 16:.1f}" text-anchor="middle" fill="{_AXIS_COLOUR}">{text}</text>')
    return parts


def _x_axis_numeric(frame: _Frame, edges: Sequence[float], ticks: Sequence[float]) -> list[str]:
    y = frame.plot_bottom
    parts = [f'<line class="axis" x1="{frame.left:.1f}" y1="{y:.1f}" x2="{frame.left + frame.plot_width:.1f}" '
             f'y2="{y:.1f}" stroke="{_AXIS_COLOUR}"/>']
    lo, hi = edges[0], edges[-1]
    for t in ticks:
        x = frame.left + (t - lo) / (hi - lo) * frame.plot_width
        parts.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x:.1f}" y2="{y + 4:.1f}" stroke="{_AXIS_COLOUR}"/>')
        parts.append(f'<text x="{x:.1f}" y="{y + 16:.1f}" text-anchor="middle" fill="{_AXIS_COLOUR}">'
                     f"{_short(t)}</text>")
    return parts


def _x_axis_shares(frame: _Frame, scale: _XScale) -> list[str]:
    y = frame.plot_bottom
    parts = [f'<line class="axis" x1="{frame.left:.1f}" y1="{frame.top:.1f}" x2="{frame.left:.1f}" y2="{y:.1f}" '
             f'stroke="{_AXIS_COLOUR}"/>']
    for t in scale.ticks:
        x = scale.x(frame, t)
        parts.append(f'<line x1="{x:.1f}" y1="{frame.top:.1f}" x2="{x:.1f}" y2="{y:.1f}" stroke="{_GRID_COLOUR}"/>')
        parts.append(f'<text x="{x:.1f}" y="{y + 14:.1f}" text-anchor="middle" fill="{_AXIS_COLOUR}">'
                     f"{t:.0%}</text>")
    return parts


def _line(frame: _Frame, scale: _YScale, xs: Sequence[float], s: Series, colour: str,
          labels: Sequence[str]) -> list[str]:
    dash = ' stroke-dasharray="6 4"' if s.dashed else ""
    parts = []
    for run in _runs([s.values]):
        d = " ".join(f"{'M' if k == 0 else 'L'}{xs[i]:.1f} {scale.y(frame, s.values[i]):.1f}"  # type: ignore[arg-type]
                     for k, i in enumerate(run))
        parts.append(f'<path class="mark line" d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash}>'
                     f"<title>{_esc(s.name)}</title></path>")
    for i, v in enumerate(s.values):
        if not _finite(v):
            continue
        band = ""
        if s.low is not None and s.high is not None and _finite(s.low[i]) and _finite(s.high[i]):
            band = f" (95% CI {scale.text(s.low[i])}–{scale.text(s.high[i])})"  # type: ignore[arg-type]
        parts.append(f'<circle class="mark point" cx="{xs[i]:.1f}" cy="{scale.y(frame, v):.1f}" r="3" '  # type: ignore[arg-type]
                     f'fill="{colour}"><title>{_esc(s.name)} · {_esc(labels[i])}: {scale.text(v)}{band}'  # type: ignore[arg-type]
                     "</title></circle>")
    return parts


def _bands(frame: _Frame, scale: _YScale, xs: Sequence[float], s: Series, colour: str) -> list[str]:
    low, high = s.low or (), s.high or ()
    parts = []
    for run in _runs([low, high]):
        if len(run) == 1:  # one point: a narrow box, as an error bar would be
            i = run[0]
            pts = [(xs[i] - 4, high[i]), (xs[i] + 4, high[i]), (xs[i] + 4, low[i]), (xs[i] - 4, low[i])]
        else:
            pts = [(xs[i], high[i]) for i in run] + [(xs[i], low[i]) for i in reversed(run)]
        d = " ".join(f"{'M' if k == 0 else 'L'}{x:.1f} {scale.y(frame, v):.1f}" for k, (x, v) in enumerate(pts))
        parts.append(f'<path class="mark band" d="{d} Z" fill="{colour}" fill-opacity="0.18" stroke="none">'
                     f"<title>{_esc(s.name)}: 95% interval</title></path>")
    return parts


def _goal_line(frame: _Frame, scale: _YScale, goal: float, label: str) -> list[str]:
    y = scale.y(frame, goal)
    x2 = frame.left + frame.plot_width
    return [f'<line class="goal" x1="{frame.left:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" '
            f'stroke="{_GOAL_COLOUR}" stroke-width="1.5" stroke-dasharray="5 3"><title>{_esc(label)}: '
            f"{scale.text(goal)}</title></line>",
            f'<text x="{x2 + 4:.1f}" y="{y + 4:.1f}" fill="{_GOAL_COLOUR}">{scale.text(goal)}</text>']


def _empty_note(frame: _Frame, text: str) -> str:
    return (f'<text x="{frame.left + frame.plot_width / 2:.1f}" y="{frame.top + frame.plot_height / 2:.1f}" '
            f'text-anchor="middle" fill="#888888">{_esc(text)}</text>')


def _x_of(frame: _Frame, scale: _YScale, value: float) -> float:
    """Where ``value`` sits on a numeric x axis that uses a :class:`_YScale` for its range and ticks."""
    if scale.log:
        v = math.log10(max(value, scale.lo))
        share = (v - math.log10(scale.lo)) / (math.log10(scale.hi) - math.log10(scale.lo))
    else:
        share = (value - scale.lo) / (scale.hi - scale.lo)
    return frame.left + min(max(share, 0.0), 1.0) * frame.plot_width


def _x_axis_scaled(frame: _Frame, scale: _YScale, label: str, *, grid: bool = False) -> list[str]:
    y = frame.plot_bottom
    parts = [f'<line class="axis" x1="{frame.left:.1f}" y1="{y:.1f}" x2="{frame.left + frame.plot_width:.1f}" '
             f'y2="{y:.1f}" stroke="{_AXIS_COLOUR}"/>']
    for t in scale.ticks:
        x = _x_of(frame, scale, t)
        if grid:
            parts.append(f'<line x1="{x:.1f}" y1="{frame.top:.1f}" x2="{x:.1f}" y2="{y:.1f}" stroke="{_GRID_COLOUR}"/>')
        parts.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x:.1f}" y2="{y + 4:.1f}" stroke="{_AXIS_COLOUR}"/>')
        parts.append(f'<text x="{x:.1f}" y="{y + 16:.1f}" text-anchor="middle" fill="{_AXIS_COLOUR}">'
                     f"{scale.tick_text(t)}</text>")
    if label:
        parts.append(f'<text x="{frame.left + frame.plot_width / 2:.1f}" y="{y + 32:.1f}" text-anchor="middle" '
                     f'fill="{_AXIS_COLOUR}">{_esc(label)}</text>')
    return parts


def _xy_series(frame: _Frame, xs: _YScale, ys: _YScale, s: XYSeries, colour: str) -> list[str]:
    points = [(x, y) for x, y in zip(s.x, s.y, strict=True) if _finite(x) and _finite(y)]
    parts = []
    if s.mode in ("line", "both") and len(points) > 1:
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        d = " ".join(f"{'M' if k == 0 else 'L'}{_x_of(frame, xs, x):.1f} {ys.y(frame, y):.1f}"
                     for k, (x, y) in enumerate(points))
        parts.append(f'<path class="mark line" d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash}>'
                     f"<title>{_esc(s.name)}</title></path>")
    if s.mode in ("points", "both"):
        radius, opacity = ("3", "1") if s.mode == "both" else ("2.2", "0.55")
        for x, y in points:
            parts.append(f'<circle class="mark point" cx="{_x_of(frame, xs, x):.1f}" cy="{ys.y(frame, y):.1f}" '
                         f'r="{radius}" fill="{colour}" fill-opacity="{opacity}"><title>{_esc(s.name)}: '
                         f"({xs.text(x)}, {ys.text(y)})</title></circle>")
    return parts


def _missing_fill(share: float) -> str:
    """Pale grey for none missing, then from light to deep orange as the share grows."""
    if not _finite(share) or share <= 0:
        return "#F1F3F5"
    t = min(max(share, 0.0), 1.0) ** 0.5  # a few missing values should already show
    low, high = (0xFD, 0xD9, 0xB5), (0xB3, 0x3C, 0x00)
    return "#" + "".join(f"{round(a + (b - a) * t):02X}" for a, b in zip(low, high, strict=True))


# -- helpers -------------------------------------------------------------------------------------
def _esc(text: Any) -> str:
    return escape(str(text), quote=True)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_lengths(chart: str, s: Series, n: int) -> None:
    for what, seq in (("values", s.values), ("low", s.low), ("high", s.high)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{chart}: series '{s.name}' has {len(seq)} {what} for {n} x labels; give one "
                             "value (or None) per x label")


def _left_margin(scale: _YScale) -> float:
    return 30 + _CHAR_PX * max(len(scale.tick_text(t)) for t in scale.ticks)


def _bottom_margin(labels: Sequence[str]) -> float:
    longest = max((len(str(s)) for s in labels), default=0)
    return 30 if longest <= 6 else 30 + 3.2 * min(longest, 16)


def _point_positions(frame: _Frame, n: int) -> list[float]:
    if n == 1:
        return [frame.left + frame.plot_width / 2]
    pad = min(12.0, frame.plot_width / (2 * max(n, 1)))
    return [frame.left + pad + i * (frame.plot_width - 2 * pad) / (n - 1) for i in range(n)]


def _runs(seqs: Sequence[Sequence[Any]]) -> list[list[int]]:
    """Runs of consecutive indices where every sequence holds a finite value."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i in range(len(seqs[0]) if seqs else 0):
        if all(_finite(seq[i]) for seq in seqs):
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def _numbers(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, bool) or v is None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def _categories(values: Iterable[Any]) -> Counter[str]:
    out: Counter[str] = Counter()
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out[str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)] += 1
    return out


def _edges(ref: list[float], cur: list[float], bins: int) -> tuple[list[float], bool]:
    """The bin edges, and whether there is one bin per integer."""
    both = np.asarray(ref + cur, dtype=float)
    if not len(both):
        return [0.0, 1.0], False
    lo, hi = (float(q) for q in np.quantile(both, [0.005, 0.995]))
    if np.all(both == np.round(both)) and hi - lo <= 30:  # small integers: one bin per value
        lo, hi = math.floor(lo), math.ceil(hi)
        return [float(v) - 0.5 for v in range(int(lo), int(hi) + 2)], True
    if hi <= lo:
        return [lo - 0.5, lo + 0.5], False
    return [float(e) for e in np.linspace(lo, hi, bins + 1)], False


def _shares(values: list[float], edges: list[float]) -> list[float]:
    if not values:
        return [0.0] * (len(edges) - 1)
    clipped = np.clip(np.asarray(values, dtype=float), edges[0], edges[-1])
    counts, _ = np.histogram(clipped, bins=np.asarray(edges))
    return [float(c) / len(values) for c in counts]


def _interval(i: int, edges: Sequence[float]) -> str:
    """Bin ``i`` as numpy counts it: [lo, hi), the last one closed; the end bins hold the clipped values."""
    lo, hi = edges[i], edges[i + 1]
    if len(edges) == 2:
        return "all values"
    if i == 0:
        return f"< {_short(hi)}"
    if i == len(edges) - 2:
        return f"≥ {_short(lo)}"
    return f"[{_short(lo)}, {_short(hi)})"


def _edge_ticks(edges: Sequence[float]) -> list[float]:
    lo, hi = edges[0], edges[-1]
    step = _nice_step(lo, hi, count=6)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _short(value: float) -> str:
    """A number in at most about six characters: 0.0123, 12.3, 1.2e+06."""
    return f"{value:.3g}" if abs(value) < 1e5 else f"{value:.2g}"
