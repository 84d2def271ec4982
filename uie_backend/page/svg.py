"""Line charts as inline SVG, written by hand for the status page (pages.py).

Not matplotlib, although it is installed: importing it costs the server process about half a second and
tens of MB, and one 200-point chart about 40 ms and 35 KB of SVG; these few functions draw the same
chart in well under a millisecond, in a few KB, with each point a ``<circle>`` whose ``data-`` attributes
carry its exact value (what the browser test reads) and whose ``<title>`` is its tooltip (docs/decisions.md,
"The status page draws its own SVG").
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 44, 44, 28, 34


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    tip: str = ""           # the tooltip: what the point is, in words
    x_label: str = ""       # shown under the axis for the first and last point


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: list[Point]
    right_axis: bool = False  # scaled to its own range, ticks on the right (task counts beside F1s)
    y_range: tuple[float, float] | None = None  # None: from 0 to the largest value


def line_chart(series: list[Series], title: str, x_title: str) -> Markup:
    """One chart, a left y axis (the first left series' range) and, when a series asks, a right one."""
    plotted = [s for s in series if s.points]
    if not plotted:
        return Markup('<p class="empty">{}: nothing to plot yet</p>').format(title)
    xs = [p.x for s in plotted for p in s.points]
    x_min, x_max = min(xs), max(xs)
    x_span = (x_max - x_min) or 1.0
    inner_w, inner_h = WIDTH - MARGIN_LEFT - MARGIN_RIGHT, HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def sx(x: float) -> float:
        return MARGIN_LEFT + (x - x_min) / x_span * inner_w if x_max > x_min else MARGIN_LEFT + inner_w / 2

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
             f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<g stroke="#999" stroke-width="1"><line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + inner_h}" '
             f'x2="{MARGIN_LEFT + inner_w}" y2="{MARGIN_TOP + inner_h}"/></g>']
    axes_done = set()
    for s in plotted:
        low, high = s.y_range or (0.0, _round_up(max(p.y for p in s.points)))
        span = (high - low) or 1.0

        def sy(y: float, low=low, span=span) -> float:
            return MARGIN_TOP + inner_h - (y - low) / span * inner_h

        if s.right_axis not in axes_done:  # the first series on each side draws that side's ticks
            axes_done.add(s.right_axis)
            parts.append(_y_axis(low, high, sy, s.right_axis, s.name, s.color))
        coords = [(sx(p.x), sy(p.y)) for p in s.points]
        parts.append(f'<polyline fill="none" stroke="{s.color}" stroke-width="1.5" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
        radius = 3 if len(coords) <= 60 else 1.8
        parts.append(f'<g fill="{s.color}" data-series="{escape(s.name)}">')
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" data-x="{p.x:g}" data-y="{p.y:g}">'
                     f'<title>{escape(p.tip)}</title></circle>' for (x, y), p in zip(coords, s.points))
        parts.append("</g>")
    first, last = plotted[0].points[0], plotted[0].points[-1]
    bottom = MARGIN_TOP + inner_h + 14
    parts.append(f'<g font-size="10" fill="#555"><text x="{sx(first.x):.1f}" y="{bottom}" text-anchor="start">'
                 f'{escape(first.x_label)}</text><text x="{sx(last.x):.1f}" y="{bottom}" text-anchor="end">'
                 f'{escape(last.x_label)}</text><text x="{MARGIN_LEFT + inner_w / 2:.1f}" y="{HEIGHT - 4}" '
                 f'text-anchor="middle">{escape(x_title)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _y_axis(low: float, high: float, sy, right: bool, name: str, color: str) -> str:
    """Five ticks with their values, and the series' name as the axis title, in the series' colour."""
    x = WIDTH - MARGIN_RIGHT if right else MARGIN_LEFT
    anchor, dx = ("start", 4) if right else ("end", -4)
    ticks = [low + (high - low) * i / 4 for i in range(5)]
    integers = all(float(t).is_integer() for t in (low, high)) and high - low >= 4
    lines = [f'<g font-size="10" fill="{color}"><line x1="{x}" y1="{MARGIN_TOP}" x2="{x}" '
             f'y2="{HEIGHT - MARGIN_BOTTOM}" stroke="#999"/>']
    for t in ticks:
        value = f"{t:.0f}" if integers else f"{t:.2f}" if high >= 1 else f"{t:.3g}"
        lines.append(f'<text x="{x + dx}" y="{sy(t) + 3:.1f}" text-anchor="{anchor}">{value}</text>')
    lines.append(f'<text x="{x}" y="{MARGIN_TOP - 12}" text-anchor="{"end" if right else "start"}" font-weight="bold">'
                 f'{escape(name)}</text></g>')
    return "".join(lines)


def _round_up(high: float) -> float:
    """An axis top at or above ``high`` whose four steps are whole when ``high`` is (task counts)."""
    if high <= 0:
        return 1.0
    return float(-(-high // 4) * 4) if float(high).is_integer() and high >= 4 else high
