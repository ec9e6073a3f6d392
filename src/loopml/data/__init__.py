"""The Data stage: read and join sources, assess, clean, snapshot, and infer the serving contract.

>>> from loopml.data import assess, clean, collect, infer_contract  # doctest: +SKIP
"""

from loopml.data.assess import DataAssessment, assess
from loopml.data.clean import CleanedData, clean
from loopml.data.contract import ColumnContract, ContractViolation, DataContract, FieldError, infer_contract
from loopml.data.gate import GateCheck, check_data
from loopml.data.snapshot import file_hash, frame_from_parquet, frame_hash, frame_to_parquet
from loopml.data.sources import CollectedData, JoinReport, SourceReport, collect, read_columns, read_source

__all__ = [
    "CleanedData",
    "CollectedData",
    "ColumnContract",
    "ContractViolation",
    "DataAssessment",
    "DataContract",
    "FieldError",
    "GateCheck",
    "JoinReport",
    "SourceReport",
    "assess",
    "check_data",
    "clean",
    "collect",
    "file_hash",
    "frame_from_parquet",
    "frame_hash",
    "frame_to_parquet",
    "infer_contract",
    "read_columns",
    "read_source",
]
