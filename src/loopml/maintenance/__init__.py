"""The Maintenance stage: labeled production rows, challenger against champion, promote or keep."""

from loopml.maintenance.compare import Comparison, compare_on_recent, labeled_frame, split_older_recent

__all__ = ["Comparison", "compare_on_recent", "labeled_frame", "split_older_recent"]
