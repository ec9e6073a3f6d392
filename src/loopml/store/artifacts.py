"""Content-addressed artifact files, each checked against its SHA-256 when read.

>>> store = ArtifactStore(tmp_path)                     # doctest: +SKIP
>>> ref = store.put(b"...", kind="model", suffix=".json")  # doctest: +SKIP
>>> store.read(ref.path, ref.sha256)                    # doctest: +SKIP
"""

from __future__ import annotations

import bz2
import hashlib
import io
import lzma
import os
import pickletools
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from loopml.errors import ArtifactError

__all__ = ["PICKLE_REFUSED", "ArtifactRef", "ArtifactStore", "pickle_family", "sha256_bytes"]

PICKLE_REFUSED = "pickle-family files are refused: they can run code on load; loopml stores models as JSON"


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
            raise ArtifactError(f"artifact '{rel}' is missing from {self.root}; restore the folder or re-run "
                                "`loopml run`")
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



def pickle_family(data: bytes) -> str | None:
    """Name the pickle-family format of ``data`` (pickle, cloudpickle, joblib, a zip or NumPy file holding
    pickles), or None. Only bytes are inspected: nothing is unpickled, so nothing can run.

    >>> import pickle
    >>> pickle_family(pickle.dumps({"a": 1}, protocol=5))
    'a pickle (protocol 5)'
    >>> pickle_family(b'{"format": "loopml.model/1"}') is None
    True
    """
    data = bytes(data)
    found = _pickle_stream(data)
    if found:
        return found
    for magic, name, head in _COMPRESSED:
        if data.startswith(magic):
            # joblib compresses a protocol 2+ pickle; LZ4 has no decoder in the standard library.
            return f"a joblib file ({name}-compressed pickle)" if head is None or _head(head, data)[:1] == b"\x80" \
                else None
    if data.startswith(b"ZF0x"):
        return "a joblib file (its legacy zlib-compressed pickle format)"
    if data.startswith(b"PK\x03\x04"):
        return _zip_with_pickle(data)
    if data.startswith(b"\x93NUMPY") and b"'descr': '|O'" in data[:512]:
        return "a NumPy array of Python objects (stored as a pickle)"
    return None


def _pickle_stream(data: bytes) -> str | None:
    # Protocol 2+ opens with PROTO (0x80), a byte that valid UTF-8 JSON never starts with.
    if data[:1] == b"\x80":
        return f"a pickle (protocol {data[1] if len(data) > 1 else '?'})"
    # Protocol 0 and 1 have no header: decode the opcodes (nothing runs) and see whether they end in STOP.
    if not data or data[0] not in _PROTO0_STARTS:
        return None
    try:
        ops = [op.name for op, _arg, _pos in pickletools.genops(data)]
    except Exception:  # a malformed opcode stream is simply not a pickle
        return None
    return "a pickle (protocol 0 or 1)" if ops and ops[-1] == "STOP" else None


# Opcodes a protocol 0/1 pickle can start with: MARK, GLOBAL, INST, the empty containers, scalars, strings.
_PROTO0_STARTS = frozenset(b"(ci}])NIJKLMFGSTUVXP")


def _zlib(wbits: int):
    return lambda d: zlib.decompressobj(wbits=wbits).decompress(d[:4096], 64)


_COMPRESSED = (  # (magic bytes, name, first decompressed bytes); joblib writes all of these
    (b"\x1f\x8b", "gzip", _zlib(31)),
    (b"\x78\x01", "zlib", _zlib(15)),
    (b"\x78\x5e", "zlib", _zlib(15)),
    (b"\x78\x9c", "zlib", _zlib(15)),
    (b"\x78\xda", "zlib", _zlib(15)),
    (b"BZh", "bz2", lambda d: bz2.BZ2Decompressor().decompress(d[:65536], 64)),
    (b"\xfd7zXZ\x00", "xz", lambda d: lzma.LZMADecompressor().decompress(d[:65536], 64)),
    (b"\x5d\x00\x00", "lzma", lambda d: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(d[:65536], 64)),
    (b"\x04\x22\x4d\x18", "LZ4", None),
)


def _head(decompress, data: bytes) -> bytes:
    try:
        return decompress(data)
    except Exception:  # a corrupt stream is not a pickle we can name; it is refused as not JSON anyway
        return b""


def _zip_with_pickle(data: bytes) -> str | None:
    # torch.save writes a zip whose archive/data.pkl is a pickle: look at member names and first bytes only.
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist()[:1000]:
                if info.filename.endswith((".pkl", ".pickle")):
                    return f"a zip archive holding a pickle ({info.filename})"
                with archive.open(info) as member:
                    if member.read(1) == b"\x80":
                        return f"a zip archive holding a pickle ({info.filename})"
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError):
        return None
    return None
