"""python -m agent bench|info|serve|stream

  bench --cache DIR   read one job spec (JSON) on stdin, run it, print its result JSON
  info [--cache DIR]  print the board's identity, software stack, free disk and power meters as JSON (one line,
                      framed: see agent/__init__.py FRAME)
  serve --cache DIR --lock-file PATH [--lock wait|fail]
                      take the board lock and serve the restricted rpyc service on 127.0.0.1
                      for one orchestrator session (protocol: agent/service.py)
  stream --cache DIR  read {token, spec} (one JSON line) on stdin and serve the spec's detector pipeline as a
                      live MJPEG stream on 127.0.0.1 until /end or the end of stdin (agent/pipeline/stream.py)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import List, Optional

from agent import framed
from agent.runner import PARENT_ENV
from agent.spec import JobSpec, SpecError

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have the kernel kill this job when the process that started it dies (Linux; elsewhere a no-op).

    A job whose agent was killed would otherwise go on loading the board while
    the next agent starts the next job.
    """
    expected = os.environ.get(PARENT_ENV)
    if not expected or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != expected:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="run one job spec read from stdin")
    bench.add_argument("--cache", required=True, help="directory holding <sha256>.onnx and <sha256>.npz files")
    info = commands.add_parser("info", help="print board identity and software as JSON")
    info.add_argument("--cache", default=".", help="the agent's cache folder (free disk is measured there)")
    serve = commands.add_parser("serve", help="serve the restricted rpyc service for one orchestrator session")
    serve.add_argument("--cache", required=True, help="directory holding <sha256>.onnx and <sha256>.npz files")
    serve.add_argument("--lock-file", required=True, help="the board lock (held while serving)")
    serve.add_argument("--lock", choices=("wait", "fail"), default="wait",
                       help="when another orchestrator holds the board: wait for it, or exit with code 3")
    stream = commands.add_parser("stream", help="serve a live detector stream on 127.0.0.1 (spec read from stdin)")
    stream.add_argument("--cache", required=True, help="directory holding the model and the source files")
    args = parser.parse_args(argv)

    if args.command == "info":
        from agent.service import board_info

        print(framed(json.dumps(board_info(args.cache), sort_keys=True)))
        return 0
    if args.command == "serve":
        from agent.service import serve as serve_session

        return serve_session(args.cache, args.lock_file, wait_for_lock=args.lock == "wait")
    if args.command == "stream":
        from agent.pipeline.stream import serve_stream  # numpy and onnxruntime: only streams need them

        die_with_parent()
        return serve_stream(args.cache)
    from agent.bench import ArtifactError, run_job  # numpy: only jobs need it
    from agent.result import error_result

    die_with_parent()
    try:
        result = run_job(JobSpec.from_json(sys.stdin.read()), args.cache)
    except (SpecError, ArtifactError) as exc:
        result = error_result(str(exc))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
