"""python -m agent bench|info

  bench --cache DIR   read one job spec (JSON) on stdin, run it, print its result JSON
  info                print the board's identity and software stack as JSON
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from agent import telemetry
from agent.bench import ArtifactError, error_result, run_job
from agent.spec import JobSpec, SpecError


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="run one job spec read from stdin")
    bench.add_argument("--cache", required=True, help="directory holding <sha256>.onnx and <sha256>.npz files")
    commands.add_parser("info", help="print board identity and software as JSON")
    args = parser.parse_args(argv)

    if args.command == "info":
        print(json.dumps(telemetry.identity(), sort_keys=True))
        return 0
    try:
        result = run_job(JobSpec.from_json(sys.stdin.read()), args.cache)
    except (SpecError, ArtifactError) as exc:
        result = error_result(str(exc))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
