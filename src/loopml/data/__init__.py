"""The Data stage: read and join sources, assess, clean, snapshot, and infer the serving contract.

>>> from loopml.data import assess, clean, collect, infer_contract  # doctest: +SKIP
"""

from loopml.data.assess import (
    DataAssessment,
    ProjectAssessment,
    SourceAssessment,
    assess,
    assess_file,
    assess_project,
)
from loopml.data.clean import CleanedData, clean
from loopml.data.cleaner import Cleaner
from loopml.data.contract import ColumnContract, ContractViolation, DataContract, FieldError, infer_contract
from loopml.data.gate import GateCheck, check_data
from loopml.data.profile import ColumnProfile, TableProfile, profile_file, profile_frame
from loopml.data.report import render_assessment
from loopml.data.snapshot import file_hash, frame_from_parquet, frame_hash, frame_to_parquet
from loopml.data.sources import CollectedData, JoinReport, SourceReport, collect, read_columns, read_source

__all__ = [
    "CleanedData",
    "Cleaner",
    "CollectedData",
    "ColumnContract",
    "ColumnProfile",
    "ContractViolation",
    "DataAssessment",
    "DataContract",
    "FieldError",
    "GateCheck",
    "JoinReport",
    "ProjectAssessment",
    "SourceAssessment",
    "SourceReport",
    "TableProfile",
    "assess",
    "assess_file",
    "assess_project",
    "check_data",
    "clean",
    "collect",
    "file_hash",
    "frame_from_parquet",
    "frame_hash",
    "frame_to_parquet",
    "infer_contract",
    "profile_file",
    "profile_frame",
    "read_columns",
    "read_source",
    "render_assessment",
]
