"""The Maintenance stage: the policy, retraining on fresh data, champion against challenger, the audit trail.

>>> from loopml.maintenance import maintain_project, read_policy   # doctest: +SKIP
"""

from loopml.maintenance.audit import history
from loopml.maintenance.compare import (
    Comparison,
    PairedBootstrap,
    compare_canary,
    compare_on_recent,
    labeled_frame,
    paired_bootstrap,
    split_older_recent,
    unpaired_bootstrap,
)
from loopml.maintenance.lock import MaintenanceBusy
from loopml.maintenance.maintain import EXIT_CODES, MaintainResult, maintain_project, watch
from loopml.maintenance.policy import Policy, PolicyDecision, Signal, decide, read_policy

__all__ = [
    "EXIT_CODES",
    "Comparison",
    "MaintainResult",
    "MaintenanceBusy",
    "PairedBootstrap",
    "Policy",
    "PolicyDecision",
    "Signal",
    "compare_canary",
    "compare_on_recent",
    "decide",
    "history",
    "labeled_frame",
    "maintain_project",
    "paired_bootstrap",
    "read_policy",
    "split_older_recent",
    "unpaired_bootstrap",
    "watch",
]
