"""The OpenAPI document of the serving app, with the served model's real input columns.

FastAPI documents ``row``/``rows`` as "an object"; here each becomes the contract's record: every
column with its JSON type, categories as an enum, nullability, and the range training saw. The
schema is for people and client generators; requests are still checked by the contract itself.

>>> from loopml.data.contract import ColumnContract
>>> column_schema(ColumnContract(name="sex", kind="categorical", nullable=False, categories=["f", "m"]))
{'type': 'string', 'enum': ['f', 'm']}
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from loopml.data.contract import ColumnContract, DataContract
from loopml.operations._bodies import ARROW_TYPE, JSON_TYPE, PARQUET_TYPES

_REF = "#/components/schemas/{model}"
_TYPES = {"numeric": "number", "integer": "integer", "boolean": "boolean", "categorical": "string"}


def column_schema(column: ColumnContract) -> dict[str, Any]:
    """The JSON schema of one column's value."""
    schema: dict[str, Any] = {"type": _TYPES[column.kind]}
    if column.kind == "categorical" and column.categories is not None:
        schema["enum"] = list(column.categories)
    if column.nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    if column.min is not None and column.max is not None:
        # Not a constraint: values outside the training range are accepted (and monitored as drift).
        schema["description"] = f"Seen in training: {column.min:g} to {column.max:g}."
    return schema


def record_schema(contract: DataContract, version: int) -> dict[str, Any]:
    """One record: exactly the contract's columns, all required (null only where training had nulls)."""
    return {
        "title": "Record",
        "description": f"One record for model version {version}: column → value.",
        "type": "object",
        "properties": {c.name: column_schema(c) for c in contract.columns},
        "required": contract.feature_names,
        "additionalProperties": False,
        "example": {c.name: _example(c) for c in contract.columns},
    }


def request_body(model: type[BaseModel], *, tables: bool) -> dict[str, Any]:
    """The ``requestBody`` of an endpoint that reads its body itself: JSON ``model`` (and Arrow/Parquet)."""
    content: dict[str, Any] = {JSON_TYPE: {"schema": {"$ref": _REF.format(model=model.__name__)}}}
    if tables:
        binary = {"schema": {"type": "string", "format": "binary"}}
        content[ARROW_TYPE] = {**binary, "description": "An Arrow IPC stream: one row per record."}
        for media in PARQUET_TYPES:
            content[media] = {**binary, "description": "A Parquet file: one row per record."}
    return {"requestBody": {"required": True, "content": content}}


def with_contract(document: dict[str, Any], models: list[type[BaseModel]],
                  contract: DataContract | None, version: int | None) -> dict[str, Any]:
    """``document`` with the request ``models`` added and, when a model is loaded, its records typed."""
    doc = copy.deepcopy(document)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schemas[model.__name__] = model.model_json_schema(ref_template=_REF)
    if contract is None or version is None:
        return doc
    schemas["Record"] = record_schema(contract, version)
    props = schemas["PredictRequest"]["properties"]
    ref = {"$ref": _REF.format(model="Record")}
    props["row"] = {"anyOf": [ref, {"type": "null"}], "description": props["row"].get("description", "")}
    props["rows"] = {"anyOf": [{"type": "array", "items": ref, "minItems": 1}, {"type": "null"}],
                     "description": props["rows"].get("description", "")}
    schemas["PredictRequest"].pop("examples", None)
    schemas["PredictRequest"]["example"] = {"row": schemas["Record"]["example"]}
    return doc


def _example(column: ColumnContract) -> Any:
    if column.kind == "categorical":
        return column.categories[0] if column.categories else "text"
    if column.kind == "boolean":
        return False
    low = column.min if column.min is not None else 0.0
    return int(low) if column.kind == "integer" else low
