"""Reading a YAML file a user wrote (a recipe, the board inventory, regress settings) with located errors.

Every problem becomes one LocatedError (the caller picks which: RecipeError, InventoryError, SettingsError)
that reads `file:line:col key: message`: a syntax error at its mark, a duplicate key at the duplicate, and a
validation error at the deepest node of its key path that the file has.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.errors import LocatedError

Loc = list[str | int]

PYDANTIC_ERROR_MESSAGES = {"extra_forbidden": "unknown key", "unexpected_keyword_argument": "unknown key",
                           "missing": "required key is missing"}
UNKNOWN_KEY = ("extra_forbidden", "unexpected_keyword_argument")
MAX_BYTES = 1024 * 1024  # a recipe, an inventory or regress settings; far more is a mistake or an attack
MAX_DEPTH = 64           # nesting levels; orch's deepest file needs 6
MAX_NODES = 100_000      # values after expanding aliases


@dataclass
class YamlDocument:
    """A parsed YAML file: its data, its node tree (for locating keys) and the error type its problems raise."""

    path: str
    data: Any
    root: yaml.Node | None
    sha256: str
    error_type: type[LocatedError]

    def error_at(self, loc: Loc | tuple[str | int, ...], message: str, at_key: bool = False) -> LocatedError:
        """An error at the deepest node of `loc` that the file has (at its key rather than its value if at_key)."""
        node, found = self.root, []
        for part in loc:
            child = _child(node, part)
            if child is None:
                break
            node = child
            found.append(part)
        if at_key and found:
            node = _key_node(self.root, found) or node
        mark = node.start_mark if node is not None else None
        return self.error_type(self.path, message, line=mark.line + 1 if mark else None,
                               column=mark.column + 1 if mark else None, key=dotted(list(loc)) or "(top level)")

    def validation_error(self, exc: ValidationError, prefix: tuple[str | int, ...] = (),
                         skip: Callable[[tuple[Any, ...], int], bool] | None = None) -> LocatedError:
        """The first pydantic error, in words a user reads, at its key.

        prefix: where the validated model sits in the file; skip(loc, index): True for parts of pydantic's
        location that are not keys of the file (beyond its own validator tags, e.g. a union member's tag).
        """
        error = exc.errors()[0]
        raw = tuple(error["loc"])
        loc: Loc = [*prefix, *(part for index, part in enumerate(raw) if isinstance(part, int)
                               or not (_is_pydantic_tag(part) or (skip is not None and skip(raw, index))))]
        message = PYDANTIC_ERROR_MESSAGES.get(error["type"], error["msg"].removeprefix("Value error, "))
        part_in_message = re.match(r"^\[(\w+)\] ", message)
        if part_in_message:  # a validator names the bad element or field itself: `[2] ...`, `[min_s] ...`
            part = part_in_message.group(1)
            loc.append(int(part) if part.isdigit() else part)
            message = message[part_in_message.end():]
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        return self.error_at(loc, message, at_key=error["type"] in UNKNOWN_KEY)


def read_yaml(path: str | Path, error_type: type[LocatedError], what: str,
              entries: dict[str, str] | None = None) -> YamlDocument:
    """Read and parse a YAML file; a missing, unreadable, oversized or malformed file, a duplicate key, nesting
    deeper than MAX_DEPTH or aliases that expand to more than MAX_NODES nodes is `error_type`.

    what: the file's kind, for messages ("recipe"); entries: what the keys of a mapping are called, by the
    mapping's own key ({"devices": "device"}: a repeated key under `devices:` is a "duplicate device").
    """
    shown = str(path)
    text = _read_text(Path(path), shown, error_type, what)
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        _check_size(shown, root, error_type)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        raise error_type(shown, f"YAML syntax error: {problem}", line=mark.line + 1 if mark else None,
                         column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise error_type(shown, f"YAML error: {exc}") from None
    finally:
        loader.dispose()
    _refuse_duplicate_keys(shown, root, error_type, entries or {}, seen=set())
    return YamlDocument(shown, data, root, hashlib.sha256(text.encode()).hexdigest(), error_type)


def _read_text(path: Path, shown: str, error_type: type[LocatedError], what: str) -> str:
    """The file's text; what is not a regular file (a FIFO, a device) is refused before it is opened."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise error_type(shown, f"is not a regular file; refusing to read it as a {what}")
        if info.st_size > MAX_BYTES:
            raise error_type(shown, f"{info.st_size} bytes is more than a {what} can be ({MAX_BYTES // 1024} KiB)")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error_type(shown, f"no such {what} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error_type(shown, f"cannot read {what}: {exc}") from None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than MAX_DEPTH where it starts (the composer recurses once
    per level: deeper files would end in a RecursionError)."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


def _check_size(path: str, root: yaml.Node | None, error_type: type[LocatedError]) -> None:
    """Refuse a document whose aliases expand to more than MAX_NODES nodes (a few hundred bytes of nested aliases
    would otherwise expand to billions), at the alias that crosses the limit."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = 1  # a node that contains itself counts once
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                mark = child.start_mark
                raise error_type(path, f"expands to more than {MAX_NODES} values (YAML aliases nested too deep)",
                                 line=mark.line + 1, column=mark.column + 1)
        sizes[id(node)] = total
        return total

    if root is not None:
        size(root)


def dotted(loc: Loc) -> str:
    """`variants.include[0].prune` from ["variants", "include", 0, "prune"]."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _refuse_duplicate_keys(path: str, node: yaml.Node | None, error_type: type[LocatedError],
                           entries: dict[str, str], seen: set[int], trail: str = "", parent: str = "") -> None:
    if node is None or id(node) in seen:  # an aliased node is checked once, where it is defined
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            key_path = f"{trail}.{key}" if trail else key
            if key in keys:
                raise error_type(path, f"duplicate {entries.get(parent, 'key')}", line=key_node.start_mark.line + 1,
                                 column=key_node.start_mark.column + 1, key=key_path)
            keys.add(key)
            _refuse_duplicate_keys(path, value_node, error_type, entries, seen, key_path, key)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(path, item, error_type, entries, seen, f"{trail}[{index}]")


def _is_pydantic_tag(part: str) -> bool:
    """pydantic's own location parts (validator and union member tags), which are not keys of the file."""
    return "[" in part or part in {"function-after", "function-before", "literal_error"}


def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        return next((value for key, value in node.value if key.value == part), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None


def _key_node(root: yaml.Node | None, loc: Loc) -> yaml.Node | None:
    parent = root
    for part in loc[:-1]:
        parent = _child(parent, part)
    if isinstance(parent, yaml.MappingNode):
        return next((key for key, _ in parent.value if key.value == loc[-1]), None)
    return None
