"""`orch stream`: a detector variant run live on a device, watched in this machine's browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.options import ArtifactsOption, DbOption, InventoryOption, lab, show
from orchestrator.lab import StreamSettings
from orchestrator.lab.pipelines import DEFAULT_CONFIDENCE


def stream(
    device: Annotated[str, typer.Argument(help="The device: an inventory board's name, or `local`.")],
    variant: Annotated[str, typer.Argument(help="The detector variant: its name as `orch results` shows it, "
                                                "or the start of its sha256.")],
    source: Annotated[str, typer.Option(help="An image folder or a video file (both looped, sent to the device), "
                                             "or a camera on the device: camera:N or /dev/videoN.")] = "camera:0",
    port: Annotated[int, typer.Option(min=0, max=65535, help="The page's port on this machine's 127.0.0.1 "
                                                             "[default: a free one].")] = 0,
    threads: Annotated[int, typer.Option(min=1, max=256, help="onnxruntime intra-op threads.")] = 1,
    confidence: Annotated[float, typer.Option(min=0.0, max=0.999, help="The score a box needs to be drawn.")]
    = DEFAULT_CONFIDENCE,
    recipe: Annotated[str | None, typer.Option(help="The variant's recipe, when its name is in several.")] = None,
    db: DbOption = None,
    artifacts: ArtifactsOption = Path("artifacts"),
    inventory: InventoryOption = None,
) -> None:
    """Run VARIANT without end on DEVICE and serve its boxes and FPS as a live page for this machine's browser
    (through the SSH connection; nothing listens beyond 127.0.0.1)."""
    settings = StreamSettings(variant, source, recipe, port, threads, confidence)
    live = lab(db, artifacts, inventory).stream(device, settings)
    try:
        show(f"{live.device}: streaming {live.variant} (process {live.pid} on the device)",
             f"open {live.url}", "the page's End button or Ctrl-C ends the stream")
        live.wait()
    finally:
        live.close()
    show(f"{live.device}: the stream has ended")


def register(app: typer.Typer) -> None:
    """Add this module's command to the `orch` app."""
    app.command()(stream)
