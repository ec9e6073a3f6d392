"""A report file opened offline in the system Chromium, headless: every request but the file's is refused."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="install chromium (apt-get install chromium)")

# Each chart's size, its marks, how many of them drew with a nonzero box, and paths left empty.
CHARTS_JS = """() => Array.from(document.querySelectorAll('svg.chart')).map(svg => {
    const box = svg.getBoundingClientRect();
    const marks = Array.from(svg.querySelectorAll('.mark'));
    const drawn = marks.filter(m => { const b = m.getBBox(); return b.width > 0 && b.height > 0; });
    const paths = Array.from(svg.querySelectorAll('path'));
    return {title: svg.getAttribute('aria-label'), width: box.width, height: box.height, marks: marks.length,
            drawn: drawn.length, empty_paths: paths.filter(p => !(p.getAttribute('d') || '').trim()).length,
            paths: paths.length};
})"""


@dataclass
class OfflinePage:
    page: Any
    requested: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


@contextmanager
def offline_page(path: Path) -> Iterator[OfflinePage]:
    """``path`` loaded in headless Chromium with the network cut off; records what was asked for."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="install the test extra: pip install -e '.[test]'")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            opened = OfflinePage(browser.new_page(viewport={"width": 1280, "height": 1000}))

            def only_files(route) -> None:
                if route.request.url.startswith("file:"):
                    route.continue_()
                else:
                    opened.blocked.append(route.request.url)
                    route.abort()

            opened.page.route("**/*", only_files)
            opened.page.on("request", lambda request: opened.requested.append(request.url))
            opened.page.goto(path.as_uri(), wait_until="load")
            yield opened
        finally:
            browser.close()
