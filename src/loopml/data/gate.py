"""The Data gate: enough rows, a target that fits the task, and quality within the spec's limits.

:class:`GateCheck` is the result every stage's gate returns; the process engine turns it into a
decision record. Each failed condition is one reason that names the number and the spec key.

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
    from loopml.spec import QualityLimits

__all__ = ["MIN_CLASS_ROWS", "GateCheck", "check_data"]

MIN_CLASS_ROWS = 10  # the default of data.limits.min_class_rows


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


def _pct(limit: float) -> str:
    """A limit as people write it: 0.3 -> '30%', 0.025 -> '2.5%'."""
    return f"{limit * 100:g}%"


def check_data(
    assessment: DataAssessment, *, min_rows: int, task: str, limits: QualityLimits | None = None
) -> GateCheck:
    """Pass when there are ``min_rows`` labeled rows, the target fits the task, and quality is within ``limits``.

    ``limits`` (``data.limits``) default to the ones the assessment was made with, else the spec's defaults:
    missing cells, duplicate rows and label noise each at most a share, every class at least some rows.

    >>> import pandas as pd
    >>> from loopml.data.assess import assess
    >>> from loopml.spec import QualityLimits
    >>> frame = pd.DataFrame({"x": [1.0, None, None, 4.0] * 60, "y": ["a", "b"] * 120})
    >>> check = check_data(assess(frame, "y", "binary"), min_rows=100, task="binary",
    ...                    limits=QualityLimits(max_missing_share=0.2))
    >>> print(check.reasons[0].split(";")[0])
    missing values 25.0% of cells exceeds data.limits.max_missing_share 20% (worst column: x 50.0%)
    """
    from loopml.spec import QualityLimits

    limits = limits or (QualityLimits(**assessment.limits) if assessment.limits else QualityLimits())
    rows = assessment.rows - assessment.target_missing
    evidence: dict[str, float | int] = {"rows": rows, "min_rows": min_rows}
    reasons: list[str] = []
    if rows < min_rows:
        reasons.append(
            f"{rows:,} rows after cleaning, need at least {min_rows:,} (data.min_rows); "
            "collect more rows or lower data.min_rows"
        )
    if task != "regression":
        reasons += _classes(assessment, limits, evidence)
    if not assessment.target_ok:
        reasons.append(assessment.target_problem or f"target '{assessment.target}' does not fit task '{task}'")
    reasons += _quality(assessment, limits, evidence)
    if reasons:
        return GateCheck(passed=False, evidence=evidence, reasons=reasons)
    summary = f"{rows:,} rows after cleaning (need {min_rows:,})"
    if task != "regression":
        summary += f"; {evidence['classes']} classes, the smallest has {evidence['minority_count']:,} rows"
    return GateCheck(passed=True, evidence=evidence, reasons=[summary])


def _classes(assessment: DataAssessment, limits: QualityLimits, evidence: dict) -> list[str]:
    counts = assessment.target_counts
    evidence.update(
        classes=len(counts), minority_count=min(counts.values(), default=0), min_class_rows=limits.min_class_rows
    )
    reasons = []
    rare = {k: n for k, n in counts.items() if n < limits.min_class_rows}
    if rare:
        listed = ", ".join(f"'{k}' ({n:,} rows)" for k, n in rare.items())
        reasons.append(
            f"too few rows in class {listed}, need at least {limits.min_class_rows} per class "
            "(data.limits.min_class_rows); collect more rows of that class or merge rare classes"
        )
    return reasons


def _quality(assessment: DataAssessment, limits: QualityLimits, evidence: dict) -> list[str]:
    """Missing cells, duplicate rows and label noise against their limits."""
    reasons = []
    missing = assessment.missing_cells_share
    evidence.update(missing_cells_share=round(missing, 6), max_missing_share=limits.max_missing_share)
    if missing > limits.max_missing_share:
        worst = max(assessment.missing_share.items(), key=lambda kv: kv[1], default=None)
        at = f" (worst column: {worst[0]} {worst[1]:.1%})" if worst else ""
        reasons.append(
            f"missing values {missing:.1%} of cells exceeds data.limits.max_missing_share "
            f"{_pct(limits.max_missing_share)}{at}; impute, drop the worst columns or collect more complete rows"
        )
    duplicates = assessment.duplicate_share
    evidence.update(duplicate_share=round(duplicates, 6), max_duplicate_share=limits.max_duplicate_share)
    if duplicates > limits.max_duplicate_share:
        reasons.append(
            f"duplicate rows {duplicates:.1%} of rows exceeds data.limits.max_duplicate_share "
            f"{_pct(limits.max_duplicate_share)} ({assessment.duplicate_rows:,} rows); set data.clean.duplicates "
            "to drop or fix the source that repeats rows"
        )
    noise = assessment.label_noise
    if noise is not None:
        evidence.update(label_noise_share=round(noise["share"], 6), max_label_noise=limits.max_label_noise)
        if noise["share"] > limits.max_label_noise:
            reasons.append(
                f"label noise {noise['share']:.1%} of rows exceeds data.limits.max_label_noise "
                f"{_pct(limits.max_label_noise)} ({noise['rows']:,} of {noise['checked_rows']:,} checked rows "
                "disagree with confident predictions); review the labelling (the assessment lists example rows) "
                "or add features that explain the labels"
            )
    return reasons
