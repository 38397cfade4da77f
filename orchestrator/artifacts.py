"""The content-addressed artifact store and the build cache index.

Layout under the store root (default ./artifacts):
  <sha256>.onnx, <sha256>.npz   artifacts named by the sha256 of their bytes
  cache/<key>.json              build cache: lineage key -> what that step produced
  checkpoints/<key>.pt          torch states of intermediate (pre-export) steps

Every file is written to a temporary name and renamed into place, and a cache
entry is written only after the artifact it names: an interrupted build never
leaves a file that a later run would trust.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

# A fixed timestamp for .npz members, so equal arrays give equal bytes and ids.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """An .npz archive whose bytes depend only on the arrays (np.savez stamps the time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH), member.getvalue())
    return buffer.getvalue()


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactStore:
    """Artifacts by content hash, plus the build cache that maps lineage keys to them.

    Nothing is trusted for its name alone: an artifact's bytes are hashed before the store hands it out as a
    cache hit or keeps it in place of new bytes (a flipped byte, a truncated copy), and a damaged one is rebuilt
    and rewritten. A file is hashed once per process while its size and modification time stay the same.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._verified: dict[Path, tuple[int, int]] = {}

    def path(self, sha256: str, suffix: str) -> Path:
        return self.root / f"{sha256}{suffix}"

    def put(self, data: bytes, suffix: str) -> str:
        """Store `data` under its sha256 (once; a damaged copy in place is replaced) and return the hash."""
        digest = sha256_bytes(data)
        if not self.verify(digest, suffix):
            atomic_write(self.path(digest, suffix), data)
        return digest

    def verify(self, sha256: str, suffix: str) -> bool:
        """True when the artifact exists and its bytes still hash to its name."""
        path = self.path(sha256, suffix)
        try:
            info = path.stat()
            if self._verified.get(path) == (info.st_size, info.st_mtime_ns):
                return True
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return False
        if digest.hexdigest() != sha256:
            return False
        self._verified[path] = (info.st_size, info.st_mtime_ns)
        return True

    # -- build cache -------------------------------------------------------

    def cached(self, key: str) -> dict[str, Any] | None:
        """What the step with this lineage key produced, if its artifact is intact."""
        entry_path = self.root / "cache" / f"{key}.json"
        try:
            entry = json.loads(entry_path.read_text())
            sha256, suffix = str(entry["sha256"]), str(entry["suffix"])
            intact = isinstance(entry.get("meta"), dict) and self.verify(sha256, suffix)
        except (OSError, ValueError, TypeError, KeyError):  # missing, or not an entry orch wrote: a miss
            return None
        return entry if intact else None

    def remember(self, key: str, sha256: str, suffix: str, meta: dict[str, Any]) -> None:
        size = self.path(sha256, suffix).stat().st_size
        entry = {"sha256": sha256, "suffix": suffix, "size": size, "meta": meta}
        atomic_write(self.root / "cache" / f"{key}.json", json.dumps(entry, sort_keys=True).encode())

    def checkpoint_path(self, key: str) -> Path:
        return self.root / "checkpoints" / f"{key}.pt"
