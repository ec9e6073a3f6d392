"""Never a 500 on bad input: 10,000 malformed requests against a real uvicorn process over loopback.

Hypothesis draws the requests (a fixed seed: ``derandomize``; no example database is written). Each
example is a burst of requests: JSON of wrong shapes and types, huge numbers, NaN and infinity,
records near the contract with columns changed, dropped or added, nested junk, broken JSON bytes,
random bytes, Arrow and Parquet bodies that are broken or hold the wrong columns, and wrong content
types, methods and paths. Every answer must be below 500, and the server process must be the same
one before and after.
"""

from __future__ import annotations

import io
import json
import time

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

BURST = 10
EXAMPLES = 1_000
MAX_BODY_BYTES = 64 << 10
MAX_ROWS = 50

_CONTENT_TYPES = [
    "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/problem+json",
    "application/json; charset=latin-1", "application/vnd.apache.arrow.stream", "application/vnd.apache.parquet",
    "application/x-parquet", "text/plain", "text/csv", "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded", "", ";", "application/", "*/*",
]
_NASTY = [
    b"[" * 5000, b"{\"rows\": " + b"[" * 3000, b'{"row": {"\\ud800": 1}}', b'{"row": {"age": "\\udfff"}}',
    b'{"row": {"age": 1e999999}}', b'{"row": {"age": -1e999999}}', b'{"row": {"age": ' + b"9" * 5000 + b"}}",
    b'{"row": {"age": NaN, "state": Infinity}}', b"\xef\xbb\xbf{\"row\": {}}", '{"row": {}}'.encode("utf-16"),
    b'{"row": {"age": 1}, "row": {"age": 2}}', b"\x00" * 64, b'{"rows": [' + b'{"age": 1},' * 2000 + b'{}]}',
    b"x" * (MAX_BODY_BYTES + 1),
]


@pytest.fixture(scope="module")
def server(served, spawn):
    options = json.dumps({"max_body_bytes": MAX_BODY_BYTES, "max_rows": MAX_ROWS, "reload_interval_s": 0})
    env = {"LOOPML_SERVE_ROOT": str(served.root), "LOOPML_SERVE_PROJECT": served.project,
           "LOOPML_SERVE_OPTIONS": options}
    args = ["-m", "uvicorn", "--factory", "loopml.operations.serve:app_from_env", "--host", "127.0.0.1",
            "--log-level", "warning"]
    with spawn(args, env) as process:
        yield process


def _json(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _scalars():
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
        st.sampled_from(["NaN", "nan", "Infinity", "-inf", "1e999", "", " ", "\x00", "null", "true", "41", "st99"]),
    )


def _junk():
    return st.recursive(_scalars(), lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _requests(good: list[dict], names: list[str]):
    junk = _junk()

    @st.composite
    def near_record(draw) -> dict:
        record = dict(draw(st.sampled_from(good)))
        for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
            record[name] = draw(junk)
        for name in draw(st.lists(st.sampled_from(names), max_size=2, unique=True)):
            record.pop(name, None)
        record.update(draw(st.dictionaries(st.text(max_size=10), junk, max_size=2)))
        return record

    json_values = st.one_of(
        junk,
        st.fixed_dictionaries({"row": near_record()}),
        st.fixed_dictionaries({"rows": st.lists(near_record() | junk, max_size=5)}),
        st.fixed_dictionaries({"rows": st.integers(MAX_ROWS - 1, MAX_ROWS + 5).map(lambda n: good[:1] * n)}),
        st.fixed_dictionaries({"row": junk}),
        st.dictionaries(st.sampled_from(["row", "rows", "model", "prediction_id", "label"]), junk, max_size=3),
        st.fixed_dictionaries({"prediction_id": st.text(max_size=40) | junk, "label": junk}),
    )

    @st.composite
    def broken(draw) -> bytes:
        data = _json(draw(json_values))
        at = draw(st.integers(0, len(data)))
        if draw(st.booleans()):
            return data[:at]
        return data[:at] + draw(st.binary(min_size=1, max_size=3)) + data[at:]

    @st.composite
    def table(draw) -> bytes:
        records = draw(st.lists(near_record(), min_size=0, max_size=6))
        parquet = draw(st.booleans())
        try:
            data = _encode_table(pa.Table.from_pylist(records), parquet)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):  # junk Arrow cannot hold or write
            data = _encode_table(pa.table({name: [draw(st.text(max_size=5))] for name in names[:3]}), parquet)
        return data[:draw(st.integers(0, len(data)))] if draw(st.booleans()) else data

    bodies = st.one_of(json_values.map(_json), broken(), table(), st.binary(max_size=200), st.sampled_from(_NASTY))
    paths = st.sampled_from(["/predict"] * 8 + ["/feedback"] * 3 + ["/admin/reload", "/ready", "/predict/", "/x"])
    methods = st.sampled_from(["POST"] * 12 + ["GET", "PUT", "DELETE", "PATCH"])
    content_types = st.none() | st.sampled_from(_CONTENT_TYPES)
    # What a client can put in a header (h11 refuses surrounding spaces before they are sent).
    auth = st.none() | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20).map(str.strip)
    return st.tuples(methods, paths, content_types, auth, bodies)


def _encode_table(table: pa.Table, parquet: bool) -> bytes:
    sink = io.BytesIO()
    if parquet:
        pq.write_table(table, sink)
    else:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return sink.getvalue()


def _send(client: httpx.Client, request: tuple) -> int:
    method, path, content_type, auth, body = request
    headers = {}
    if content_type is not None:
        headers["content-type"] = content_type
    if auth is not None:
        headers["authorization"] = auth
    return client.request(method, path, content=body, headers=headers).status_code


def test_malformed_requests_never_get_a_5xx(server, served):
    good = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in served.holdout.head(5).to_dict("records")]
    statuses: dict[int, int] = {}
    start = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        before = client.get("/health").headers["x-loopml-worker"]

        @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                  phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))
        @given(st.lists(_requests(good, served.contract.feature_names), min_size=BURST, max_size=BURST))
        def burst(requests: list[tuple]) -> None:
            for request in requests:
                status = _send(client, request)
                statuses[status] = statuses.get(status, 0) + 1
                assert status < 500, f"{status} for {request!r}"[:2000]

        burst()
        after = client.get("/health").headers["x-loopml-worker"]
    elapsed = time.monotonic() - start
    assert sum(statuses.values()) >= BURST * EXAMPLES
    assert before == after == str(server.proc.pid)
    assert server.proc.poll() is None
    # The run reached the answers that matter, not only one kind of refusal.
    assert {200, 404, 405, 413, 415, 422} <= set(statuses), statuses
    print(f"{sum(statuses.values()):,} requests in {elapsed:.1f} s: {dict(sorted(statuses.items()))}")
