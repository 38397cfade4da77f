"""`orch nightly`: sweep the nightly recipe on the devices, check every series it measured (re-running what
regress flags), and report (results/nightly_report.py)."""

from __future__ import annotations

import dataclasses

from sqlalchemy import Engine

from orchestrator.artifacts import ArtifactStore
from orchestrator.fleet.devices import DeviceSpec
from orchestrator.lab.sweep import SweepObserver, SweepOptions, run_sweep
from orchestrator.recipes import LoadedRecipe
from orchestrator.results.judge import RegressConfig
from orchestrator.results.nightly_report import NightlyReport, nightly_report
from orchestrator.results.regress import Rerun, regress


def run_nightly(loaded: LoadedRecipe, devices: list[DeviceSpec], engine: Engine, artifacts: ArtifactStore,
                config: RegressConfig, rerun: Rerun | None = None, observer: SweepObserver | None = None,
                options: SweepOptions | None = None) -> NightlyReport:
    """Sweep the recipe (kind nightly) on the devices, then check every series it measured.

    Every job runs every night: a sweep's resume (skip_done) is switched off whatever `options` say.
    """
    options = dataclasses.replace(options or SweepOptions(), skip_done=False)
    sweep = run_sweep(loaded, devices, engine, artifacts, observer=observer, kind="nightly", options=options)
    found = regress(engine, config, rerun=rerun, sweep_id=sweep.sweep_id)
    return nightly_report(engine, sweep.sweep_id, found)
