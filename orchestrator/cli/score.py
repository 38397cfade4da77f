"""`orch score`: a detections file scored against a ground truth, with the numbers the boards compute."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.options import show
from orchestrator.datasets.scoring import score_files
from orchestrator.errors import UserError
from orchestrator.ui import score_tables


def score(
    ground_truth: Annotated[Path, typer.Argument(help="A COCO instances JSON file, or a Pascal VOC folder.")],
    detections: Annotated[Path, typer.Argument(
        help="A COCO results JSON file, or (VOC) a folder of the devkit's comp*_det_<set>_<class>.txt files.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    year: Annotated[int, typer.Option(help="VOC: the year of the folder (2007 or 2012).")] = 2007,
    image_set: Annotated[str | None, typer.Option(
        "--set", help="VOC: the image list scored [default: test for 2007, val for 2012].")] = None,
) -> None:
    """Score detections as COCO's evaluation (12 numbers) and the VOC devkit (AP all-point and 11-point) do."""
    if fmt not in ("table", "json"):
        raise UserError(f"--format {fmt!r}: choose table or json")
    scores, headline = score_files(ground_truth, detections, year, image_set)
    if fmt == "json":
        typer.echo(json.dumps({"headline": headline, **asdict(scores)}, indent=2))
        return
    show(*score_tables(scores, headline))


def register(app: typer.Typer) -> None:
    app.command("score")(score)
