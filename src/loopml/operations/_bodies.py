"""Request and response bodies of the serving app: JSON, Arrow IPC stream or Parquet in, JSON out.

Every problem with a body becomes an :class:`~fastapi.HTTPException` whose ``detail`` is a list of
``{"row", "column", "reason"}`` (the same shape as a contract violation), never a 500.

>>> kind = body_kind("application/json; charset=utf-8")
>>> kind
'json'
>>> problem("send smaller batches")
{'row': None, 'column': None, 'reason': 'send smaller batches'}
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import pydantic_core
from fastapi import HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

BodyKind = Literal["json", "arrow", "parquet"]
Model = TypeVar("Model", bound=BaseModel)

JSON_TYPE = "application/json"
ARROW_TYPE = "application/vnd.apache.arrow.stream"
PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet")
ACCEPTED = (JSON_TYPE, ARROW_TYPE, *PARQUET_TYPES)
# More problems than this help no client and make the answer as large as the request.
MAX_PROBLEMS = 100


def problem(reason: str, *, row: int | None = None, column: str | None = None) -> dict[str, Any]:
    """One entry of an error ``detail``: the record's position, the column and why."""
    return {"row": row, "column": column, "reason": reason}


def problems_error(status: int, problems: list[dict[str, Any]]) -> HTTPException:
    """An HTTP error listing at most ``MAX_PROBLEMS`` problems (and how many more there were)."""
    if len(problems) > MAX_PROBLEMS:
        problems = [*problems[:MAX_PROBLEMS], problem(f"... and {len(problems) - MAX_PROBLEMS:,} more problems")]
    return HTTPException(status, detail=problems)


def too_many_rows(found: str, max_rows: int) -> HTTPException:
    return problems_error(413, [problem(
        f"a batch of {found} rows is over the limit of {max_rows:,} rows per request; send smaller batches")])


def json_bytes(content: Any) -> bytes:
    """``content`` as JSON bytes; text that UTF-8 cannot carry (a lone surrogate a client sent) is escaped."""
    try:
        return pydantic_core.to_json(content)
    except pydantic_core.PydanticSerializationError:
        return json.dumps(content, ensure_ascii=True, default=str).encode("ascii")


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(content), status_code=status, headers=headers, media_type=JSON_TYPE)


def body_kind(content_type: str | None) -> BodyKind:
    """What a ``Content-Type`` header announces; no header means JSON. Anything else is a 415."""
    media = (content_type or JSON_TYPE).split(";", 1)[0].strip().lower()
    if media in ("", JSON_TYPE) or (media.startswith("application/") and media.endswith("+json")):
        return "json"
    if media == ARROW_TYPE:
        return "arrow"
    if media in PARQUET_TYPES:
        return "parquet"
    raise problems_error(415, [problem(
        f"unsupported Content-Type {media[:80]!r}; send one of: {', '.join(ACCEPTED)}")])


def parse_json(body: bytes, model: type[Model]) -> Model:
    """The body validated as ``model``; a bare NaN is read as a missing value, as Python's json does."""
    if not body.strip():
        raise problems_error(422, [problem(
            "the body is empty; send a JSON object, e.g. {\"row\": {...}} or {\"rows\": [...]}")])
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise problems_error(422, [request_problem(e) for e in exc.errors(include_input=False)]) from None


def request_problem(error: Any) -> dict[str, Any]:
    """A pydantic error as a problem: where (``body.rows[1].age``) and why; the input is never echoed."""
    loc = list(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        cause = (error.get("ctx") or {}).get("error", "cannot be parsed")
        at = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        return problem(f"the body is not valid JSON: {cause}{at}")
    inner = loc[1:] if loc[:1] == ["body"] else loc
    row = column = None
    if inner[:1] == ["rows"] and len(inner) > 1 and isinstance(inner[1], int):
        row = inner[1]
        column = str(inner[2]) if len(inner) > 2 else None
    elif inner[:1] == ["row"]:
        row = 0
        column = str(inner[1]) if len(inner) > 1 else None
    path = "body" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in inner)
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return problem(f"{path}: {message}", row=row, column=column)


def read_table(body: bytes, kind: Literal["arrow", "parquet"], max_rows: int) -> list[dict[str, Any]]:
    """The records of an Arrow IPC stream or a Parquet file, refusing more than ``max_rows`` before decoding all.

    >>> import pyarrow as pa
    >>> sink = pa.BufferOutputStream()
    >>> table = pa.table({"age": [41]})
    >>> with pa.ipc.new_stream(sink, table.schema) as writer:
    ...     writer.write_table(table)
    >>> read_table(sink.getvalue().to_pybytes(), "arrow", max_rows=10)
    [{'age': 41}]
    """
    name = "Arrow IPC stream" if kind == "arrow" else "Parquet file"
    if not body:
        raise problems_error(422, [problem(f"the body is empty; send an {name} with one row per record")])
    try:
        table = _read_arrow(body, max_rows) if kind == "arrow" else _read_parquet(body, max_rows)
        # Offsets and lengths in the bytes are the client's; check them all before reading values.
        table.validate(full=True)
    except HTTPException:
        raise
    except Exception as exc:  # any failure to decode untrusted bytes is a bad body, not a server fault
        raise problems_error(422, [problem(f"the body is not a readable {name}: {str(exc)[:300]}")]) from None
    names = table.column_names
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise problems_error(422, [problem(
            f"the {name} has duplicate columns: {', '.join(duplicated)}; send each column once", column=duplicated[0])])
    if table.num_rows == 0:
        raise problems_error(422, [problem(f"the {name} holds no rows; send at least one record")])
    return table.to_pylist()


def _read_arrow(body: bytes, max_rows: int) -> pa.Table:
    reader = pa.ipc.open_stream(pa.py_buffer(body))
    batches, rows = [], 0
    for batch in reader:
        rows += batch.num_rows
        if rows > max_rows:
            raise too_many_rows(f"more than {max_rows:,}", max_rows)
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=reader.schema)


def _read_parquet(body: bytes, max_rows: int) -> pa.Table:
    file = pq.ParquetFile(pa.BufferReader(pa.py_buffer(body)))
    rows = file.metadata.num_rows
    if rows > max_rows:
        raise too_many_rows(f"{rows:,}", max_rows)
    return file.read()
