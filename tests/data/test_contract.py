import math

import pandas as pd
import pytest

from loopml.data import ContractViolation, DataContract, infer_contract
from loopml.errors import DataError


@pytest.fixture
def contract():
    train = pd.DataFrame(
        {
            "age": [30, 41, 52],
            "rate": [0.5, None, 0.7],
            "state": ["12", "13", "14"],
            "member": [True, False, True],
            "ui": ["yes", "no", "yes"],
        }
    )
    return infer_contract(train, target="ui", task="binary")


def _good(**changes):
    return {"age": 35, "rate": 0.6, "state": "12", "member": False, **changes}


def test_inferred_columns(contract):
    assert contract.feature_names == ["age", "rate", "state", "member"]
    kinds = {c.name: (c.kind, c.nullable) for c in contract.columns}
    assert kinds == {
        "age": ("integer", False),
        "rate": ("numeric", True),
        "state": ("categorical", False),
        "member": ("boolean", False),
    }
    assert (contract.columns[0].min, contract.columns[0].max) == (30.0, 52.0)
    assert contract.columns[2].categories == ["12", "13", "14"]
    assert contract.target_classes == ["no", "yes"]


def test_json_round_trip(contract):
    again = DataContract.from_json(contract.to_json())
    assert again == contract
    assert again.validate_records([_good()]).shape == (1, 4)


def test_good_batch_has_training_dtypes(contract):
    frame = contract.validate_records([_good(), _good(rate=None, state=13, age=99.0, member=True)])
    assert list(frame.columns) == contract.feature_names
    assert frame.dtypes.astype(str).to_dict() == {"age": "float64", "rate": "float64", "state": "str", "member": "bool"}
    assert frame["state"].tolist() == ["12", "13"] and math.isnan(frame.loc[1, "rate"])
    assert frame.loc[1, "age"] == 99.0  # out of the training range is accepted here


def _problems(contract, records):
    with pytest.raises(ContractViolation) as info:
        contract.validate_records(records)
    return [(e.row, e.column, e.reason) for e in info.value.errors]


def test_missing_column(contract):
    record = _good()
    del record["age"]
    assert _problems(contract, [record]) == [(0, "age", "missing column; expected an integer")]


def test_extra_column_lists_the_expected_ones(contract):
    with pytest.raises(ContractViolation, match=r"row 0, column 'agee': unknown column; the model expects: age, rate"):
        contract.validate_records([_good(agee=3)])


def test_target_in_a_request_is_named(contract):
    assert _problems(contract, [_good(ui="yes")]) == [
        (0, "ui", "this is the target; leave it out of prediction requests")
    ]


def test_wrong_type(contract):
    assert _problems(contract, [_good(rate="abc")]) == [(0, "rate", "expected a numeric value, found str 'abc'")]


def test_bool_is_not_a_number(contract):
    assert _problems(contract, [_good(age=True)]) == [(0, "age", "expected an integer, found bool True")]


def test_null_where_training_had_none(contract):
    assert _problems(contract, [_good(age=float("nan")), _good(state=None)]) == [
        (0, "age", "null not allowed: the training data had no missing values here"),
        (1, "state", "null not allowed: the training data had no missing values here"),
    ]


def test_inf_is_never_allowed(contract):
    with pytest.raises(ContractViolation, match=r"column 'rate': inf not allowed; send a finite number or null"):
        contract.validate_records([_good(rate=float("inf"))])


def test_unknown_category(contract):
    assert _problems(contract, [_good(state="ZZ")]) == [(0, "state", "unknown category 'ZZ'; known: 12, 13, 14")]


def test_long_category_lists_are_truncated():
    train = pd.DataFrame({"code": [f"c{i:02d}" for i in range(30)] * 2, "y": [0.0, 1.0] * 30})
    contract = infer_contract(train, target="y", task="regression")
    with pytest.raises(ContractViolation, match=r"known: c00, c01, .*, c19, \.\.\. \(10 more\)"):
        contract.validate_records([{"code": "zz"}])


def test_all_problems_in_all_rows_are_reported(contract):
    problems = _problems(contract, [_good(age="x"), "not a record", _good(member=1)])
    assert problems == [
        (0, "age", "expected an integer, found str 'x'"),
        (1, "", "expected a JSON object of column: value, found str"),
        (2, "member", "expected true or false, found int 1"),
    ]


def test_empty_request(contract):
    with pytest.raises(ContractViolation, match=r"request: expected at least one record") as info:
        contract.validate_records([])
    assert [(e.row, e.column) for e in info.value.errors] == [(-1, "")]


def test_violation_is_a_data_error(contract):
    with pytest.raises(DataError, match=r"^1 problem in the records; fix them and send again:\n  - row 0"):
        contract.validate_records([_good(age="x")])


@pytest.mark.parametrize(("record", "column", "kind"), [
    ({**_good(), "age": "old"}, "age", "type"),
    ({**_good(), "age": 35.5}, "age", "type"),
    ({**_good(), "age": True}, "age", "type"),
    ({**_good(), "age": None}, "age", "null"),
    ({**_good(), "age": float("nan")}, "age", "null"),
    ({**_good(), "age": float("inf")}, "age", "not_finite"),
    ({**_good(), "age": 10**400}, "age", "not_finite"),
    ({**_good(), "state": "99"}, "state", "unknown_category"),
    ({**_good(), "state": 99.0}, "state", "unknown_category"),
    ({**_good(), "state": ["12"]}, "state", "type"),
    ({**_good(), "member": "yes"}, "member", "type"),
    ({k: v for k, v in _good().items() if k != "rate"}, "rate", "missing_column"),
    ({**_good(), "agee": 3}, "agee", "unknown_column"),
    ({**_good(), "ui": "yes"}, "ui", "unknown_column"),
])
def test_every_problem_names_its_kind_for_counting(contract, record, column, kind):
    with pytest.raises(ContractViolation) as info:
        contract.validate_records([record])
    assert [(e.column, e.kind) for e in info.value.errors] == [(column, kind)]


def test_problems_of_the_whole_request_or_a_record_name_their_kind(contract):
    for records, kind in (("rows", "request"), ([], "request"), ([_good(), 7], "not_a_record")):
        with pytest.raises(ContractViolation) as info:
            contract.validate_records(records)
        assert [e.kind for e in info.value.errors] == [kind]
