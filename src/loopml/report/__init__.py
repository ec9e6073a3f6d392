"""HTML reports and the dashboard's pages: self-contained files (inline CSS and SVG), readable offline.

>>> from loopml.report import monitoring_report, project_report
>>> monitoring_report(store, "benefits-outreach").write("monitoring.html")    # doctest: +SKIP
PosixPath('monitoring.html')
>>> project_report(store, "benefits-outreach").write("report.html")           # doctest: +SKIP
PosixPath('report.html')
>>> from loopml.report import dashboard_app
>>> app = dashboard_app(store, "benefits-outreach")   # a FastAPI app; `loopml ui` serves it   # doctest: +SKIP
"""

from loopml.report.dashboard import dashboard_app
from loopml.report.monitoring import monitoring_report
from loopml.report.page import Report
from loopml.report.project import project_report

__all__ = ["Report", "dashboard_app", "monitoring_report", "project_report"]
