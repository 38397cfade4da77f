"""One PNG per panel, for slides: plotly figures drawn by kaleido in a headless Chromium.

kaleido 1.x drives a Chromium it finds on the PATH (Debian's `chromium` works offline; BROWSER_PATH names another);
it never downloads one here. Every figure of a run is written in one batch, so the browser starts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from orchestrator.errors import first_line

WIDTH_PX = 1200
INSTALL_HINT = "PNGs need Chromium and kaleido (apt-get install chromium; pip install 'kaleido>=1')"


@dataclass
class PngOutcome:
    """How many PNGs were written, and why none were (None: all were)."""

    written: int
    skipped: str | None = None


def write_pngs(figures: list[tuple[go.Figure, Path]]) -> PngOutcome:
    """Write each figure to its path (folders made); a missing kaleido or browser skips them all with the reason."""
    if not figures:
        return PngOutcome(0)
    try:
        import kaleido  # noqa: F401 (plotly.io.write_images needs it)
    except ImportError:
        return PngOutcome(0, f"kaleido is not installed: {INSTALL_HINT}")
    for _, path in figures:
        path.parent.mkdir(parents=True, exist_ok=True)
    heights = [int(figure.layout.height or 420) for figure, _ in figures]
    try:
        import plotly.io

        plotly.io.write_images([figure for figure, _ in figures], [path for _, path in figures], format="png",
                               width=WIDTH_PX, height=heights, validate=False)
    except (RuntimeError, OSError, ValueError) as exc:
        return PngOutcome(0, f"{first_line(exc)} {INSTALL_HINT}")
    return PngOutcome(sum(path.is_file() for _, path in figures))
