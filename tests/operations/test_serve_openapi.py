"""/openapi.json and /docs show the served model's real input columns, from its data contract."""

from __future__ import annotations

import httpx
import pytest

from loopml.operations import create_app

_TYPES = {"numeric": "number", "integer": "integer", "boolean": "boolean", "categorical": "string"}


@pytest.fixture(scope="module")
def doc(client) -> dict:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def _plain(schema: dict) -> dict:
    """The non-null member of a nullable column's ``anyOf``."""
    return next((s for s in schema.get("anyOf", []) if s.get("type") != "null"), schema)


def test_the_record_lists_every_column_with_its_type(doc, served):
    record = doc["components"]["schemas"]["Record"]
    contract = served.contract
    assert list(record["properties"]) == contract.feature_names
    assert record["required"] == contract.feature_names
    assert record["additionalProperties"] is False
    for column in contract.columns:
        schema = record["properties"][column.name]
        assert _plain(schema)["type"] == _TYPES[column.kind], column.name
        assert ("anyOf" in schema) == column.nullable, column.name


def test_categories_are_enums(doc, served):
    record = doc["components"]["schemas"]["Record"]
    state = next(c for c in served.contract.columns if c.name == "state")
    assert _plain(record["properties"]["state"])["enum"] == state.categories


def test_row_and_rows_are_records_and_the_example_is_valid(doc, client):
    request = doc["components"]["schemas"]["PredictRequest"]
    assert {"$ref": "#/components/schemas/Record"} in request["properties"]["row"]["anyOf"]
    (array,) = [s for s in request["properties"]["rows"]["anyOf"] if s.get("type") == "array"]
    assert array["items"] == {"$ref": "#/components/schemas/Record"}
    # The example /docs pre-fills is a record the contract accepts.
    r = client.post("/predict", json=request["example"])
    assert r.status_code == 200, r.text


def test_predict_documents_its_body_types_and_errors(doc):
    post = doc["paths"]["/predict"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "application/vnd.apache.arrow.stream",
                                                   "application/vnd.apache.parquet", "application/x-parquet"}
    json_body = post["requestBody"]["content"]["application/json"]
    assert json_body["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
    assert {"200", "401", "413", "415", "422", "503"} <= set(post["responses"])
    assert post["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictResponse"}
    assert {"ApiKey", "BearerKey"} <= set(doc["components"]["securitySchemes"])


def test_feedback_documents_its_body(doc):
    body = doc["paths"]["/feedback"]["post"]["requestBody"]["content"]
    assert body == {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}}}
    assert "prediction_id" in doc["components"]["schemas"]["FeedbackRequest"]["properties"]


def test_docs_pages_answer(client):
    assert "swagger" in client.get("/docs").text.lower()
    assert client.get("/redoc").status_code == 200


def test_without_a_model_the_document_is_still_served(served, run_app):
    with run_app(create_app(served.store, "nobody")) as url:
        doc = httpx.get(f"{url}/openapi.json").json()
    assert "Record" not in doc["components"]["schemas"]
    assert "PredictRequest" in doc["components"]["schemas"]
