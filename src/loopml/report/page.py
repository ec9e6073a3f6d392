"""A report page: one self-contained HTML file (CSS inline, charts as inline SVG, no script, no external URL).

:func:`render_page` fills a Jinja2 template shipped in ``loopml/report/templates/`` (every page extends
``base.html.j2``, which holds the layout and the style sheet) and returns a :class:`Report`: the page's
HTML as a ``str``, which also shows itself in Jupyter and writes itself to a file.

>>> page = render_page("base.html.j2", title="Empty <page>", subtitle="nothing yet")
>>> "<title>Empty &lt;page&gt;</title>" in page, "http" in page.replace('xmlns="http://www.w3.org', "")
(True, False)
"""

from __future__ import annotations

import html
import math
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

__all__ = ["Report", "render_page"]

_IFRAME_HEIGHT_PX = 900


class Report(str):
    """A whole HTML page as text; ``write`` saves it, and Jupyter shows it (isolated in an iframe).

    >>> report = Report("<!doctype html><html><body>hi</body></html>")
    >>> report._repr_html_().startswith('<iframe srcdoc="&lt;!doctype html&gt;')
    True
    """

    __slots__ = ()

    def _repr_html_(self) -> str:
        # An iframe keeps the page's style sheet from restyling the notebook around it.
        return (f'<iframe srcdoc="{html.escape(self, quote=True)}" style="width:100%;height:{_IFRAME_HEIGHT_PX}px;'
                'border:1px solid #ddd" sandbox></iframe>')

    def write(self, path: str | Path) -> Path:
        """Write the page to ``path`` (UTF-8; missing parent folders are created); returns the path.

        >>> Report("<html></html>").write(tmp_path / "reports" / "monitoring.html")   # doctest: +SKIP
        PosixPath('.../reports/monitoring.html')
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(self), encoding="utf-8")
        return path


def render_page(template: str, **context: Any) -> Report:
    """Render ``template`` (a file name in ``loopml/report/templates/``) with ``context``; values are escaped.

    Pass SVG from :mod:`loopml.report.charts` through :func:`svg` so it is kept as markup.
    """
    return Report(_environment().get_template(template).render(**context))


def svg(markup: str) -> Markup:
    """Mark a chart's SVG (already escaped by :mod:`loopml.report.charts`) as safe to embed."""
    return Markup(markup)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("loopml.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(pct=_pct, num=_num)
    return env


def _pct(value: Any, digits: int = 1) -> str:
    """0.123 → ``12.3%``; a missing value → ``–``."""
    return f"{value:.{digits}%}" if _finite(value) else "–"


def _num(value: Any, digits: int = 3) -> str:
    """A number in ``digits`` significant digits; a missing value → ``–``."""
    return f"{value:.{digits}g}" if _finite(value) else "–"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
