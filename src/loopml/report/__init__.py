"""HTML reports and the dashboard's pages: self-contained files (inline CSS and SVG), readable offline.

>>> from loopml.report import monitoring_report
>>> monitoring_report(store, "benefits-outreach").write("monitoring.html")    # doctest: +SKIP
PosixPath('monitoring.html')
"""

from loopml.report.monitoring import monitoring_report
from loopml.report.page import Report

__all__ = ["Report", "monitoring_report"]
