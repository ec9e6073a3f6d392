"""Content-addressed artifact files, each checked against its SHA-256 when read.

>>> store = ArtifactStore(tmp_path)                     # doctest: +SKIP
>>> ref = store.put(b"...", kind="model", suffix=".json")  # doctest: +SKIP
>>> store.read(ref.path, ref.sha256)                    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loopml.errors import ArtifactError

__all__ = ["ArtifactRef", "ArtifactStore", "sha256_bytes"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ArtifactRef:
    path: str  # relative to the artifact root, always with forward slashes
    sha256: str
    size: int


class ArtifactStore:
    """Files under one root folder; a path never resolves outside it."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def put(self, data: bytes, *, kind: str, suffix: str) -> ArtifactRef:
        """Write ``data`` atomically under ``kind/<sha256><suffix>`` (idempotent)."""
        digest = sha256_bytes(data)
        rel = f"{kind}/{digest}{suffix}"
        target = self._resolve(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            # Write then rename so a crash never leaves a truncated artifact under its final name.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return ArtifactRef(rel, digest, len(data))

    def read(self, rel: str, sha256: str) -> bytes:
        """The artifact's bytes; :class:`ArtifactError` when missing or altered."""
        path = self._resolve(rel)
        if not path.is_file():
            raise ArtifactError(f"artifact '{rel}' is missing from {self.root}; restore the folder or re-run `loopml run`")
        data = path.read_bytes()
        actual = sha256_bytes(data)
        if actual != sha256:
            raise ArtifactError(
                f"artifact '{rel}' fails its SHA-256 check (recorded {sha256[:12]}…, found {actual[:12]}…): "
                "the file was changed after it was stored; refusing to load it. Restore it or re-run `loopml run`"
            )
        return data

    def remove(self, rel: str) -> None:
        self._resolve(rel).unlink(missing_ok=True)

    def _resolve(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root) or Path(rel).is_absolute():
            raise ArtifactError(f"artifact path '{rel}' points outside the artifact root; refusing it")
        return path
