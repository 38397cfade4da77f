"""Attacks, each performed for real: what a hostile or careless input does to orch, its boards and its database
now. Every one fails safely with one clear line, nothing changed and nothing lost (docs/security.md)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.result import parse_result
from agent.runner import DEADLINE_ALLOWANCE_S, job_deadline_s
from agent.service import AgentService, BoardLock
from agent.spec import Gate, InputSpec, JobSpec, SpecError, Thermal
from orchestrator.artifacts import ArtifactStore
from orchestrator.errors import InventoryError, RecipeError, SettingsError
from orchestrator.fleet.inventory import load_inventory
from orchestrator.recipes import load_recipe
from orchestrator.results.judge import load_regress_config
from tests.support import ORCH, TINY_RECIPE, one_line_error, orch, recipe_refused, run_env
from tests.support.fleet import recipe as fast_recipe
from tests.support.fleet import rows, sweep
from tests.support.sshd import Fleet, sshd_available

needs_sshd = pytest.mark.skipif(not sshd_available(), reason="needs root and OpenSSH's sshd (.ci/run installs it)")
BOMB = "name: bomb\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))
DEEP = "name: deep\nx: " + "[" * 3000 + "]" * 3000 + "\n"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- 1. a recipe that runs a command on every board ---------------------------------------------------------------

def test_a_recipe_naming_a_command_meter_is_refused_unless_the_command_line_allows_it(tmp_path: Path):
    path = tmp_path / "evil.yaml"
    path.write_text(TINY_RECIPE + "  power: {type: command, command: ['sh', '-c', 'touch /tmp/pwned']}\n")
    with pytest.raises(RecipeError, match=r"evil.yaml:\d+:\d+ benchmark.power.type: a `command` meter runs a "
                                          r"program on every board"):
        load_recipe(path)
    assert load_recipe(path, allow_command_meter=True).recipe.benchmark.power["type"] == "command"
    recipe_refused(orch("recipes", "check", str(path), env=run_env(tmp_path)), "benchmark.power.type")
    inventory = tmp_path / "devices.yaml"  # the board owner's own file may name one
    inventory.write_text("devices:\n  pi:\n    host: pi.lab\n    power: {type: command, command: [read-watts]}\n")
    assert load_inventory(inventory).get("pi").power == {"type": "command", "command": ["read-watts"]}


# -- 2. to 4. orch query: time, Ctrl-C, memory, the file's bytes ---------------------------------------------------

RECURSIVE = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"


def test_an_endless_query_stops_at_its_time_limit(tmp_path: Path, lab_db: Path):
    started = time.monotonic()
    done = orch("query", RECURSIVE, "--timeout", "1", env=run_env(tmp_path), timeout=120)
    one_line_error(done, "query stopped after its time limit of 1 s")
    assert time.monotonic() - started < 60


def test_ctrl_c_stops_a_query_at_once(tmp_path: Path, lab_db: Path):
    process = subprocess.Popen([ORCH, "query", RECURSIVE], env=run_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(3)  # well into the query
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130 and "query stopped; nothing was changed" in stderr, stderr


def test_a_huge_csv_is_streamed_not_held_in_memory(tmp_path: Path, lab_db: Path):
    big = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) SELECT i, i * 2 FROM n"
    # A fresh interpreter runs the command, so its children's peak is this one command's.
    measure = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
               "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024);"
               "print(done.stderr, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", measure, ORCH, "query", big, "-f", "csv", "-o",
                           str(tmp_path / "big.csv")], capture_output=True, text=True, env=run_env(tmp_path),
                          timeout=300)
    code, peak_mb = map(int, done.stdout.split())
    assert code == 0 and "3000000 rows written" in done.stderr, done.stderr
    assert peak_mb < 400, peak_mb  # 3 million rows held at once would be several times that


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_query_leaves_the_database_file_byte_for_byte_as_it_was(tmp_path: Path, lab_db: Path, journal: str):
    with sqlite3.connect(lab_db) as plain:
        plain.execute(f"PRAGMA journal_mode={journal}")
    before = sha256_of(lab_db)
    assert orch("query", "SELECT count(*) FROM results", env=run_env(tmp_path)).returncode == 0
    assert sha256_of(lab_db) == before
    with sqlite3.connect(lab_db) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == journal


def test_a_query_reads_an_older_schema_as_it_is(tmp_path: Path):
    from tests.support.results import create_0001_database

    path = tmp_path / "results.db"
    create_0001_database(f"sqlite:///{path}", results=2)
    before = sha256_of(path)
    done = orch("query", "SELECT count(*) FROM results", "-f", "csv", env=run_env(tmp_path))
    assert done.returncode == 0 and done.stdout.splitlines()[1] == "2", done.stdout + done.stderr
    assert sha256_of(path) == before  # not migrated by a query


# -- 5. the build cache ---------------------------------------------------------------------------------------------

def test_a_flipped_byte_in_a_cached_artifact_is_found_and_repaired(built_tiny, tmp_path: Path):
    from orchestrator.builder.pipeline import Builder

    builder, variants, store = built_tiny
    copy = ArtifactStore(tmp_path / "store")
    for item in store.root.rglob("*"):
        if item.is_file():
            (copy.root / item.relative_to(store.root)).parent.mkdir(parents=True, exist_ok=True)
            (copy.root / item.relative_to(store.root)).write_bytes(item.read_bytes())
    victim = variants[0]
    path = copy.path(victim.sha256, ".onnx")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    path.write_bytes(bytes(data))
    rebuilt = Builder(builder.loaded, copy).build_all()
    assert rebuilt[0].sha256 == victim.sha256 and sha256_of(path) == victim.sha256  # rebuilt in place


def test_put_replaces_a_damaged_copy_and_malformed_cache_entries_are_misses(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    sha = store.put(b"model bytes", ".onnx")
    store.path(sha, ".onnx").write_bytes(b"model bytez")  # same size
    assert ArtifactStore(tmp_path).put(b"model bytes", ".onnx") == sha
    assert store.path(sha, ".onnx").read_bytes() == b"model bytes"
    (tmp_path / "cache").mkdir()
    for key, body in (("a" * 64, "[1, 2]"), ("b" * 64, '{"suffix": ".onnx"}'), ("c" * 64, "{not json"),
                      ("d" * 64, json.dumps({"sha256": sha, "suffix": ".onnx", "meta": [1]}))):
        (tmp_path / "cache" / f"{key}.json").write_text(body)
        assert store.cached(key) is None


# -- 6. YAML that takes forever or recurses -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "fragment"), [(BOMB, "expands to more than 100000 values"),
                                                  (DEEP, "nested deeper than 64 levels")])
def test_alias_bombs_and_deep_nesting_are_located_errors_in_every_file(tmp_path: Path, text: str, fragment: str):
    path = tmp_path / "f.yaml"
    path.write_text(text)
    for load, error in ((load_recipe, RecipeError), (load_inventory, InventoryError),
                        (load_regress_config, SettingsError)):
        with pytest.raises(error, match=rf"f.yaml:\d+:\d+: .*{fragment}"):
            load(path)
    recipe_refused(orch("recipes", "check", str(path), env=run_env(tmp_path), timeout=60), fragment)


def test_a_recipe_that_is_a_fifo_or_huge_is_refused_unread(tmp_path: Path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    one_line_error(orch("recipes", "show", str(fifo), env=run_env(tmp_path), timeout=60),
                   "is not a regular file; refusing to read it as a recipe")
    huge = tmp_path / "huge.yaml"
    huge.write_text("# padding\n" * 200_000)
    recipe_refused(orch("recipes", "check", str(huge), env=run_env(tmp_path)), "is more than a recipe can be")


# -- 7. absurd gates ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("gate", "fragment"), [
    ("measure: {min_iters: 80, min_s: .inf, max_s: 10}", "benchmark.measure.min_s"),
    ("measure: {min_iters: 80, min_s: .nan, max_s: 10}", "benchmark.measure.min_s"),
    ("measure: {min_iters: 80, min_s: 0.2, max_s: 1.0e300}", "benchmark.measure.max_s"),
    ("measure: {min_iters: 80, min_s: 5, max_s: 2}", "is below min_s"),
    ("measure: {min_iters: 1000000000000, min_s: 0.2, max_s: 10}", "benchmark.measure.min_iters"),
    ("measure: {min_iters: eighty, min_s: 0.2, max_s: 10}", "benchmark.measure.min_iters"),
    ("thermal: {max_c: -5}", "benchmark.thermal.max_c"),
])
def test_absurd_gates_are_located_errors_at_load(tmp_path: Path, gate: str, fragment: str):
    path = tmp_path / "r.yaml"
    path.write_text(TINY_RECIPE.replace("measure: {min_iters: 80, min_s: 0.2, max_s: 10}", gate))
    with pytest.raises(RecipeError, match=r"r.yaml:\d+:\d+ .*") as caught:
        load_recipe(path)
    assert fragment in str(caught.value)


def test_a_spec_with_infinite_gates_sent_straight_to_the_agent_is_refused(tmp_path: Path):
    body = json.loads(JobSpec(artifact_sha256="ab" * 32, inputs=[InputSpec("x", [1])]).to_json())
    for change in ({"measure": {"min_iters": 5, "min_s": 1e400, "max_s": 10}},
                   {"warmup": {"min_iters": 5, "min_s": "soon"}}, {"rest_s": float("nan")}):
        with pytest.raises(SpecError):
            JobSpec.from_json(json.dumps({**body, **change}))
    result = json.loads(AgentService(str(tmp_path)).exposed_run(json.dumps({**body, "rest_s": -1})))
    assert result["status"] == "error" and "rest_s" in result["error"]


def test_the_job_deadline_counts_every_phase_a_job_waits_through():
    plain = JobSpec(artifact_sha256="ab" * 32, inputs=[InputSpec("x", [1])], measure=Gate(10, 1, 100))
    patient = JobSpec(artifact_sha256="ab" * 32, inputs=[InputSpec("x", [1])], measure=Gate(10, 1, 100),
                      rest_s=600, thermal=Thermal(70, 900), power={"type": "none"}, power_idle_s=300)
    assert job_deadline_s(patient) - job_deadline_s(plain) == 600 + 900 + 300
    assert job_deadline_s(plain) >= 100 + DEADLINE_ALLOWANCE_S


# -- 8. markup in data ----------------------------------------------------------------------------------------------

def test_markup_and_emoji_codes_in_data_print_as_written(tmp_path: Path, lab_db: Path):
    done = orch("query", "SELECT '[/red] [bold]x :x:' AS \"[/red]\"", env=run_env(tmp_path))
    assert done.returncode == 0 and "[/red] [bold]x :x:" in done.stdout and "❌" not in done.stdout, done.stderr
    inventory = tmp_path / "devices.yaml"
    inventory.write_text("devices:\n  gone:\n    host: 127.0.0.9\n    port: 9\n    key: '/keys/[/red]:x:'\n")
    checked = orch("devices", "check", "--inventory", str(inventory), env=run_env(tmp_path), timeout=120)
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stdout + checked.stderr
    assert "MarkupError" not in checked.stdout + checked.stderr


# -- 9. orch export and a table named like a path ------------------------------------------------------------------

def test_export_writes_only_orchs_tables_inside_its_folder(tmp_path: Path, lab_db: Path):
    with sqlite3.connect(lab_db) as plain:
        plain.execute('CREATE TABLE "../../escaped" (i INTEGER)')
        plain.execute("CREATE TABLE notes (i INTEGER)")
    folder = tmp_path / "out" / "x"
    done = orch("export", str(folder), env=run_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "escaped.csv").exists() and not (folder / "notes.csv").exists()
    assert {p.name for p in (tmp_path / "out").rglob("*")} >= {"results.csv", "latest_results.csv"}
    one_line_error(orch("export", str(folder), "-t", "../../escaped", env=run_env(tmp_path)),
                   "no table or view named ../../escaped")


# -- 10. the board's files ------------------------------------------------------------------------------------------

def test_the_board_lock_never_follows_a_symlink(tmp_path: Path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (tmp_path / "board.lock").symlink_to(precious)
    with pytest.raises(OSError):
        BoardLock(str(tmp_path / "board.lock"))
    assert precious.read_text() == "keep me"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    boards = Fleet(tmp_path / "fleet", ["127.0.0.2"])
    yield boards
    boards.stop()


@needs_sshd
@pytest.mark.slow
def test_a_cache_dir_others_can_write_or_a_planted_agent_is_refused(tmp_path: Path, fleet: Fleet, built_tiny):
    cache = fleet.board("board1").cache_dir
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    report = sweep(fleet, fast_recipe(tmp_path), built_tiny[2], tmp_path / "results.db", devices="board1")
    assert report.down and "is writable by group or others (mode 777)" in report.down[0].reason
    cache.chmod(0o755)
    assert not sweep(fleet, fast_recipe(tmp_path), built_tiny[2], tmp_path / "a.db", devices="board1").down
    manifest = next(cache.glob("agent-*/MANIFEST.json"))
    manifest.write_text(manifest.read_text().replace('"agent/', '"agent/evil_'))
    report = sweep(fleet, fast_recipe(tmp_path), built_tiny[2], tmp_path / "b.db", devices="board1")
    assert report.down and "MANIFEST.json is not this orch's agent" in report.down[0].reason


@needs_sshd
@pytest.mark.slow
def test_a_board_whose_shell_prints_a_banner_still_works(tmp_path: Path, built_tiny):
    chatty = Fleet(tmp_path / "chatty", ["127.0.0.3"], banner="Welcome to lab board 7 {\"event\": \"listening\"}")
    try:
        report = sweep(chatty, fast_recipe(tmp_path), built_tiny[2], tmp_path / "results.db", devices="board1")
        assert report.statuses == {"ok": 2} and not report.down, report.boards
        checked = orch("devices", "check", "board1", env=chatty.env(run_env(tmp_path)), timeout=300)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        chatty.stop()
    assert rows(tmp_path / "results.db", "SELECT count(*) FROM results WHERE status = 'ok'") == [(2,)]


# -- 11. smaller ones -----------------------------------------------------------------------------------------------

def test_duplicate_keys_inside_one_device_are_refused(tmp_path: Path):
    path = tmp_path / "devices.yaml"
    path.write_text("devices:\n  pi:\n    host: a.lab\n    host: b.lab\n")
    with pytest.raises(InventoryError, match=r"devices.yaml:4:5 devices.pi.host: duplicate key"):
        load_inventory(path)


def test_a_trailing_newline_does_not_sneak_past_a_name_or_a_digest(tmp_path: Path):
    path = tmp_path / "devices.yaml"
    path.write_text('devices:\n  "pi\\n":\n    host: pi.lab\n')
    with pytest.raises(InventoryError, match="device name"):
        load_inventory(path)
    with pytest.raises(ValueError, match="sha256 hex digest"):
        AgentService(str(tmp_path)).exposed_has_artifact("a" * 64 + "\n")


def test_a_fifo_model_does_not_hang_recipes_show(tmp_path: Path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {onnx: model.onnx}\ndataset: {name: image_folder, root: images, "
                      "image_size: 32}\nvariants: {quantize: [none, int8_static]}\n")
    assert orch("recipes", "show", str(recipe), env=run_env(tmp_path), timeout=60).returncode == 0


def test_a_grid_of_a_hundred_thousand_variants_is_refused_before_it_is_expanded(tmp_path: Path):
    path = tmp_path / "huge.yaml"
    ratios = ", ".join(f"0.{i:04d}" for i in range(1, 1001))
    path.write_text(TINY_RECIPE.replace("ratio: [0, 0.5], finetune_epochs: [0, 1]",
                                        f"ratio: [{ratios}], finetune_epochs: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]")
                    .replace("quantize: [none, int8_static]", "quantize: [none, int8_static, fp16, dynamic_uint8, "
                                                               "dynamic_int8, uint8_static, int8_static_qoperator]"))
    one_line_error(orch("recipes", "show", str(path), env=run_env(tmp_path), timeout=60),
                   "the grid has 70000 variants, more than the 10000 one recipe may build")


@pytest.mark.parametrize("url", ["mysql://user:secret@db/lab", "not a url://x", "postgresql+sqlite:///x"])
def test_a_database_url_orch_does_not_speak_is_one_line(tmp_path: Path, url: str):
    done = orch("results", "--db", url, env=run_env(tmp_path))
    one_line_error(done, "orch keeps results in a SQLite file")
    assert "secret" not in done.stderr


def test_an_agent_answer_that_is_not_a_result_is_recorded_as_one(tmp_path: Path):
    for answer in ("Welcome!\n{}", '{"status": "pwned"}', "[1, 2]", ""):
        result = parse_result(answer)
        assert result["status"] == "error" and "something other than a result" in result["error"]
