"""The Data gate: enough rows, and for classification enough of every class.

:class:`GateCheck` is the result every stage's gate returns; the process engine turns it into a
decision record.

>>> import pandas as pd
>>> from loopml.data.assess import assess
>>> frame = pd.DataFrame({"x": range(30), "y": ["a", "b"] * 15})
>>> check = check_data(assess(frame, "y", "binary"), min_rows=100, task="binary")
>>> check.passed, check.reasons
(False, ['30 rows after cleaning, need at least 100 (data.min_rows); collect more rows or lower data.min_rows'])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopml.data.assess import DataAssessment

__all__ = ["MIN_CLASS_ROWS", "GateCheck", "check_data"]

MIN_CLASS_ROWS = 10


@dataclass
class GateCheck:
    """A gate's verdict, the numbers behind it, and one sentence per reason.

    On failure ``reasons`` names each failed condition; on a pass it holds one summary sentence.
    """

    passed: bool
    evidence: dict[str, float | int] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def check_data(assessment: DataAssessment, *, min_rows: int, task: str) -> GateCheck:
    """Pass when there are ``min_rows`` labeled rows and, for classification, 2+ classes of 10+ rows each."""
    rows = assessment.rows - assessment.target_missing
    evidence: dict[str, float | int] = {"rows": rows, "min_rows": min_rows}
    reasons: list[str] = []
    if rows < min_rows:
        reasons.append(
            f"{rows:,} rows after cleaning, need at least {min_rows:,} (data.min_rows); "
            "collect more rows or lower data.min_rows"
        )
    if task != "regression":
        counts = assessment.target_counts
        evidence.update(
            classes=len(counts), minority_count=min(counts.values(), default=0), min_class_rows=MIN_CLASS_ROWS
        )
        if len(counts) < 2:
            found = ", ".join(f"'{k}'" for k in counts) or "none"
            reasons.append(
                f"target '{assessment.target}' has {len(counts)} class{'es' if len(counts) != 1 else ''} "
                f"({found}), need at least 2; collect rows of the other class or check business.target"
            )
        rare = {k: n for k, n in counts.items() if n < MIN_CLASS_ROWS}
        if rare:
            listed = ", ".join(f"'{k}' ({n:,} rows)" for k, n in rare.items())
            reasons.append(
                f"too few rows in class {listed}, need at least {MIN_CLASS_ROWS} per class; "
                "collect more rows of that class or merge rare classes"
            )
    if reasons:
        return GateCheck(passed=False, evidence=evidence, reasons=reasons)
    summary = f"{rows:,} rows after cleaning (need {min_rows:,})"
    if task != "regression":
        summary += f"; {evidence['classes']} classes, the smallest has {evidence['minority_count']:,} rows"
    return GateCheck(passed=True, evidence=evidence, reasons=[summary])
