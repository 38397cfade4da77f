"""The architecture holds: imports follow the layer order, no module-level import cycle, every module has its place
in docs/architecture.md, and the checkers themselves catch what they are for."""

from __future__ import annotations

import ast
import re

from tests.support import REPO
from tests.support.layers import LAYERS, module_cycles, modules, upward_imports

FIXTURE = REPO / "tests" / "support" / "upward"
MAX_FUNCTION_LINES = 60
MAX_COMMAND_LINES = 15


def test_no_import_goes_up_the_layers():
    assert upward_imports(REPO) == []


def test_no_module_level_import_cycle():
    assert module_cycles(REPO) == []


def test_the_checkers_find_every_kind_of_upward_import_and_a_cycle():
    found = upward_imports(FIXTURE)
    assert len(found) == 5, "\n".join(found)
    assert any("agent.bench imports orchestrator.errors (agent -> foundation)" in line for line in found)
    for target, line in (("orchestrator.lab", 5), ("orchestrator.cli", 8), ("orchestrator.lab", 12),
                         ("orchestrator.cli", 17)):
        assert any(f"upward.py:{line}: orchestrator.fleet.upward imports {target} " in f for f in found), found
    assert module_cycles(FIXTURE) == [["orchestrator.results.a", "orchestrator.results.b"]]


def test_every_layer_names_real_modules():
    names = set(modules(REPO))
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            assert prefix in names, f"layer {layer}: {prefix} is not a module of orch"


def test_the_architecture_page_names_every_package_and_module():
    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for name, path in modules(REPO).items():
        if "migrations" in name or path.name == "__init__.py" and name in ("agent.power.meters",):
            continue
        shown = path.relative_to(REPO).as_posix()
        stem = shown.removesuffix("/__init__.py").removesuffix(".py")
        if stem.split("/")[-1] not in page:
            missing.append(shown)
    assert not missing, f"docs/architecture.md says nothing of {missing}"


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_no_function_is_over_sixty_lines():
    long = []
    for name, path in modules(REPO).items():
        if "migrations" in name:
            continue
        for function in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            length = (function.end_lineno or function.lineno) - function.lineno + 1
            if length > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(REPO)}:{function.lineno} {function.name}: {length} lines")
    assert not long, long


def test_every_cli_command_body_is_fifteen_lines_of_logic_at_most():
    """A command parses, calls one Lab method and renders: its body (docstring, blank lines and comments aside)."""
    long = []
    for path in sorted((REPO / "orchestrator" / "cli").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for function in _functions(ast.parse(source)):
            body = function.body[1:] if ast.get_docstring(function) else function.body
            if not body:
                continue
            text = lines[body[0].lineno - 1:function.end_lineno]
            logic = [line for line in text if line.strip() and not re.match(r"\s*#", line)]
            if len(logic) > MAX_COMMAND_LINES:
                long.append(f"{path.relative_to(REPO)}:{function.lineno} {function.name}: {len(logic)} lines")
    assert not long, long
