"""CSV and Parquet files, one or a glob of parts: delimiter, encoding and header found by looking."""

from __future__ import annotations

import codecs
import csv
import glob
import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from loopml.data.sources._base import Source
from loopml.errors import DataError

_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
_FORMATS = ("auto", "csv", "parquet")
_SNIFF_BYTES = 64 * 1024
_CHUNK_BYTES = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class _Dialect:
    """How one CSV file is written; ``encoding`` is settled by :meth:`FileSource._scan` over the whole file."""

    delimiter: str
    encoding: str
    header: bool


class FileSource(Source):
    """CSV (``.csv``, ``.tsv``, gzip or not) or Parquet files; ``path`` may be a glob of parts.

    Delimiter, encoding (utf-8, else latin-1) and header are found unless the spec gives them.
    A glob's files are read in sorted order and must share their columns.

    >>> source = FileSource(FileSourceSpec(name="sales", path="exports/sales-*.csv.gz"), Path("."))  # doctest: +SKIP
    >>> source.read().shape, source.details["encoding"]                                             # doctest: +SKIP
    ((30000, 12), 'latin-1')
    """

    kind = "file"

    def __init__(self, spec: Any, root: Path):
        super().__init__(spec, root)
        self._file_list: list[Path] | None = None
        self._dialects: dict[Path, _Dialect] = {}
        self._scans: dict[Path, tuple[str, int]] = {}

    def describe(self) -> str:
        return f"file {self.spec.path}"

    # -- hooks ---------------------------------------------------------------------------------------

    def _columns(self) -> list[str]:
        paths = self._paths()
        first = self._file_columns(paths[0])
        for path in paths[1:]:
            found = self._file_columns(path)
            if set(found) != set(first):
                missing = [c for c in first if c not in found]
                extra = [c for c in found if c not in first]
                raise DataError(
                    f"{self._label}: {path.name} does not have the columns of {paths[0].name}: missing "
                    f"{', '.join(missing) or 'none'}; extra {', '.join(extra) or 'none'}; every file matching "
                    f"'{self.spec.path}' must have the same columns"
                )
        return first

    def _read(self, columns: list[str] | None, since: Any, limit: int | None) -> pd.DataFrame:
        # Read what the filter and order need too; _select drops it again.
        needed = None if columns is None else list(dict.fromkeys([*columns, *filter(None, [self._incremental])]))
        self.columns()  # every part must share the columns before any is read
        paths = self._paths()
        parts = [self._read_file(path, needed) for path in paths]
        frame = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        self.details = {"format": ", ".join(sorted({self._format(p) for p in paths})), "files": len(paths)}
        csvs = [p for p in paths if p in self._scans]
        if csvs:
            first = self._dialect(csvs[0])
            self.details.update(delimiter=first.delimiter, header=first.header,
                                encoding=", ".join(sorted({self._scans[p][0] for p in csvs})))
        return self._select(frame, columns, since, limit)

    def _count(self) -> int:
        self.columns()  # an empty file or odd glob part fails here, with its own message
        return sum(
            pq.ParquetFile(path).metadata.num_rows if self._format(path) == "parquet" else self._scan(path)[1]
            for path in self._paths()
        )

    # -- files ---------------------------------------------------------------------------------------

    def _paths(self) -> list[Path]:
        if self._file_list is None:
            pattern = self.spec.path
            if not any(c in pattern for c in _GLOB_CHARS):
                path = self.root / pattern
                if not path.is_file():
                    raise DataError(f"{self._label}: file not found: {path}; check the source's `path:`")
                self._file_list = [path]
            else:
                found = glob.glob(os.path.join(glob.escape(str(self.root)), pattern), recursive=True)
                self._file_list = sorted(Path(p) for p in found if Path(p).is_file())
                if not self._file_list:
                    raise DataError(f"{self._label}: no file matches '{pattern}' in {self.root}; "
                                    "check the source's `path:`")
        return self._file_list

    def _format(self, path: Path) -> str:
        chosen = self.spec.format
        if chosen not in _FORMATS:
            raise DataError(f"{self._label}: unknown format '{chosen}'; set `format:` to one of {', '.join(_FORMATS)}")
        if chosen != "auto":
            return chosen
        suffixes = [s.lower() for s in path.suffixes]
        if suffixes and suffixes[-1] == ".gz":
            suffixes = suffixes[:-1]
        found = _SUFFIXES.get(suffixes[-1]) if suffixes else None
        if found is None:
            raise DataError(
                f"{self._label}: {path.name}: cannot tell the format from the suffix '{''.join(path.suffixes)}'; "
                "use a file ending in .csv, .csv.gz, .tsv, .parquet or .pq, or set `format:` to csv or parquet"
            )
        return found

    def _file_columns(self, path: Path) -> list[str]:
        if self._format(path) == "parquet":
            try:
                names = pq.read_schema(path).names
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"{self._label}: {path.name} is not a readable Parquet file: {exc}; "
                                "fix the file or set `format:`") from exc
            # pandas stores an unnamed index as an extra column; it is not data.
            return [n for n in names if not n.startswith("__index_level_")]
        dialect = self._dialect(path)
        try:
            head = pd.read_csv(io.StringIO(_sample(path, dialect.encoding)), sep=dialect.delimiter, nrows=0,
                               header=0 if dialect.header else None)
        except pd.errors.EmptyDataError:
            raise DataError(f"{self._label}: {path.name} has no rows (the file is empty); "
                            "point the source at a file with data") from None
        return [str(c) for c in head.columns] if dialect.header else [f"col_{i}" for i in range(head.shape[1])]

    def _read_file(self, path: Path, columns: list[str] | None) -> pd.DataFrame:
        if self._format(path) == "parquet":
            try:
                table = pq.read_table(path, columns=columns or self._file_columns(path))
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"{self._label}: {path.name} is not a readable Parquet file: {exc}; "
                                "fix the file or set `format:`") from exc
            # The index pandas may have stored is an ordinary column here, as columns() lists it.
            return table.to_pandas(ignore_metadata=True)
        dialect = self._dialect(path)
        encoding, _ = self._scan(path)
        try:
            return pd.read_csv(path, sep=dialect.delimiter, encoding=encoding, usecols=columns,
                               header=0 if dialect.header else None,
                               names=None if dialect.header else self._file_columns(path),
                               compression="gzip" if _is_gzip(path) else None)
        except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
            raise DataError(f"{self._label}: {path.name} is not readable as CSV: {exc}; "
                            "fix the file or set `format:`") from exc

    def _dialect(self, path: Path) -> _Dialect:
        """The file's delimiter, header and a first guess at its encoding, from its first 64 KiB."""
        if path not in self._dialects:
            encoding = self.spec.encoding or "utf-8"
            try:
                text = _sample(path, encoding)
            except UnicodeDecodeError:
                if self.spec.encoding:
                    raise self._undecodable(path) from None
                encoding, text = "latin-1", _sample(path, "latin-1")
            except LookupError:
                raise DataError(f"{self._label}: unknown encoding '{encoding}'; set `encoding:` to e.g. "
                                "utf-8 or latin-1") from None
            delimiter = self.spec.delimiter or _sniff_delimiter(text)
            header = self.spec.header if self.spec.header is not None else _has_header(text, delimiter)
            self._dialects[path] = _Dialect(delimiter, encoding, header)
        return self._dialects[path]

    def _scan(self, path: Path) -> tuple[str, int]:
        """The encoding that decodes the whole file, and its rows, every one checked to have the header's fields.

        pandas would pad a short row with NaN, silently; pyarrow's strict parser counts the records
        (converting one column, so it is fast), and only when it meets a bad row does the slower csv
        module look for the line to name.
        """
        if path not in self._scans:
            dialect = self._dialect(path)
            encoding = dialect.encoding
            if not _decodes(path, encoding):
                if self.spec.encoding:
                    raise self._undecodable(path)
                encoding = "latin-1"  # decodes any bytes; says so in the report
            try:
                rows = _records(path, dialect.delimiter, encoding) - dialect.header
            except pa.ArrowInvalid:
                rows = self._count_records(path, dialect, encoding)
            self._scans[path] = (encoding, max(rows, 0))
        return self._scans[path]

    def _undecodable(self, path: Path) -> DataError:
        return DataError(f"{self._label}: {path.name} cannot be decoded as {self.spec.encoding}; "
                         "fix `encoding:` or drop it to let loopml find it")

    def _count_records(self, path: Path, dialect: _Dialect, encoding: str) -> int:
        """Rows counted by the csv module, naming the first line whose field count differs from the first's."""
        width, rows = None, 0
        with _open_text(path, encoding) as fh:
            reader = csv.reader(fh, delimiter=dialect.delimiter)
            for record in reader:
                if not record:
                    continue  # a blank line, which pandas skips too
                if width is None:
                    width = len(record)
                elif len(record) != width:
                    raise DataError(
                        f"{self._label}: {path.name} line {reader.line_num}: expected {width} fields "
                        f"(as in {'the header' if dialect.header else 'the first line'}), found {len(record)}; "
                        f"fix the row, or quote values that hold the delimiter {dialect.delimiter!r}"
                    )
                rows += 1
        return rows - dialect.header


def read_columns(path: Path, format: str = "auto") -> list[str]:
    """The column names of one file (or glob), read cheaply: a Parquet schema or a CSV header.

    >>> read_columns(Path("examples/benefits/benefits.csv"))[:3]  # doctest: +SKIP
    ['stateur', 'statemb', 'state']
    """
    return _single(path, format).columns()


def read_source(path: Path, format: str = "auto") -> pd.DataFrame:
    """Read a CSV (delimiter, encoding and header found; gzip fine) or Parquet file into a frame.

    >>> read_source(Path("examples/benefits/benefits.csv")).shape  # doctest: +SKIP
    (4877, 18)
    """
    return _single(path, format).read()


def _single(path: Path, format: str) -> FileSource:
    from loopml.spec import FileSourceSpec

    path = Path(path)
    # Not validated: the file's own name need not be a valid source name, nor a glob.
    spec = FileSourceSpec.model_construct(name=path.stem, path=glob.escape(path.name), format=format)
    return FileSource(spec, path.parent)


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if _is_gzip(path) else path.open("rb")


def _open_text(path: Path, encoding: str) -> IO[str]:
    return io.TextIOWrapper(_open_binary(path), encoding=encoding, newline="")


def _sample(path: Path, encoding: str) -> str:
    """The first 64 KiB, cut after the last whole line (a cut-off line confuses the sniffer)."""
    with _open_binary(path) as fh:
        raw = fh.read(_SNIFF_BYTES)
    if len(raw) == _SNIFF_BYTES:
        raw = raw[: raw.rfind(b"\n") + 1] or raw
    return raw.decode(encoding).removeprefix("\ufeff")


def _decodes(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with _open_binary(path) as fh:
            for chunk in iter(lambda: fh.read(_CHUNK_BYTES), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _records(path: Path, delimiter: str, encoding: str) -> int:
    """Records in the file, header included; a record with another field count raises ArrowInvalid."""
    utf8 = codecs.lookup(encoding).name == "utf-8"  # pyarrow transcodes anything it does not spell utf8
    reader = pcsv.open_csv(
        pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None),
        read_options=pcsv.ReadOptions(use_threads=False, autogenerate_column_names=True,
                                      encoding="utf8" if utf8 else encoding),
        parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(include_columns=["f0"], column_types={"f0": pa.string()}),
    )
    return sum(batch.num_rows for batch in reader)


def _sniff_delimiter(text: str) -> str:
    try:
        return csv.Sniffer().sniff(text, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _has_header(text: str, delimiter: str) -> bool:
    try:
        if csv.Sniffer().has_header(text):
            return True
    except csv.Error:
        pass
    # The sniffer votes "no header" over text-only columns; a header row rarely holds a number.
    first = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    return not any(_is_number(cell) for cell in first)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
