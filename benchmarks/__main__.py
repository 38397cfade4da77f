"""python -m benchmarks [NAME ...]: run orch's own benchmarks and print each figure with its unit."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = [m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_")]
    chosen = [n for n in names if not argv or any(a in n for a in argv)]
    for name in sorted(chosen):
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}: {module.__doc__.strip().splitlines()[0]}", flush=True)
        for figure, value, unit in module.run():
            print(f"{figure}: {value:.4g} {unit}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
