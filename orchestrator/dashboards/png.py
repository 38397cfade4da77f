"""One PNG per panel, for slides: plotly figures drawn by kaleido in a headless Chromium.

kaleido 1.x drives a Chromium it finds on the PATH (Debian's `chromium` works offline; BROWSER_PATH names another);
it never downloads one here. A PngWriter starts the browser with the first figure handed over (none: no browser)
and draws each figure as it comes, in a thread of its own, so the drawing overlaps the other panels' queries.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import first_line

WIDTH_PX = 1200
TABS = 2  # figures drawn at once (this kind of machine has 2 cores)
INSTALL_HINT = "PNGs need Chromium and kaleido (apt-get install chromium; pip install 'kaleido>=1')"


@dataclass
class PngOutcome:
    """How many PNGs were written, and why not all of them were (None: all were)."""

    written: int
    skipped: str | None = None


class PngWriter:
    """Draws figures into PNG files in the background: `add` each, then `close` for the outcome."""

    def __init__(self) -> None:
        self._figures: queue.Queue[tuple[Any, Path] | None] = queue.Queue()
        self._paths: list[Path] = []
        self._failed: str | None = None
        self._handed_over = False  # close() was called and the drawing thread has seen it
        self._thread = threading.Thread(target=self._run, name="orch-png", daemon=True)

    def add(self, figure: Any, path: Path) -> None:
        """Draw a plotly figure into `path` (its folder made)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self._paths:
            self._thread.start()
        self._paths.append(path)
        self._figures.put((figure, path))

    def close(self) -> PngOutcome:
        """Wait for every figure handed over; how many files were written and, if not all, why."""
        if self._paths:
            self._figures.put(None)
            self._thread.join()
        written = sum(path.is_file() for path in self._paths)
        if self._failed is None and written < len(self._paths):
            self._failed = f"{len(self._paths) - written} of {len(self._paths)} figures were not drawn"
        return PngOutcome(written, self._failed)

    def _run(self) -> None:
        try:
            import kaleido
        except ImportError:
            self._failed = f"kaleido is not installed: {INSTALL_HINT}"
        else:
            try:
                asyncio.run(self._draw(kaleido))
            # Whatever stops the browser (none found, it crashed, it timed out) costs the PNGs, never the pages:
            # the reason is told instead.
            except Exception as exc:  # noqa: BLE001
                self._failed = f"{first_line(exc)} {INSTALL_HINT}"
        while not self._handed_over:  # what is handed over after a failure is not drawn
            self._handed_over = self._figures.get() is None

    async def _draw(self, kaleido: Any) -> None:
        loop = asyncio.get_running_loop()
        async with kaleido.Kaleido(n=TABS) as browser:
            drawing = []
            while not self._handed_over:
                item = await loop.run_in_executor(None, self._figures.get)
                if item is None:
                    self._handed_over = True
                    break
                figure, path = item
                opts = {"format": "png", "width": WIDTH_PX, "height": int(figure.layout.height or 420)}
                drawing.append(asyncio.create_task(browser.write_fig(figure, path=path, opts=opts)))
            await asyncio.gather(*drawing)
