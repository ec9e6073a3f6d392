"""The monitor's Prometheus gauges, set from the store on each scrape of the serving app's ``/metrics``."""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING, Any

from loopml.operations._alerts import ALERT_KINDS
from loopml.operations._windows import PREDICTION_WINDOWS
from loopml.store import Store

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["update_monitor_gauges"]

_GAUGES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def update_monitor_gauges(registry: CollectorRegistry, store: Store, project: str) -> None:
    """Set the monitoring gauges in ``registry`` from the store (the serving app's registry, for ``/metrics``).

    Call it before rendering each scrape; the gauges are created in ``registry`` on the first call.

    - ``loopml_monitor_alert{kind}``: 1 when the latest window judged on that kind raised it, else 0
      (``goal_breached``: the latest window with labeled performance)
    - ``loopml_monitor_alerts{kind}``: alerts raised so far
    - ``loopml_monitor_last_seq``: the last prediction seq monitored
    - ``loopml_monitor_drifted_columns``: drifted columns in the latest window
    - ``loopml_monitor_goal_metric{source}``: the goal metric in the latest window, ``estimated`` or
      ``labeled`` (NaN when there is none)
    - ``loopml_monitor_latency_p99_ms``: p99 latency in the latest window
    - ``loopml_monitor_rejected_share``: the share of rows serving refused (422) in the latest window

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> registry = CollectorRegistry()
    >>> update_monitor_gauges(registry, store, "benefits-outreach")              # doctest: +SKIP
    >>> b'loopml_monitor_alert{kind="drift"}' in generate_latest(registry)        # doctest: +SKIP
    True
    """
    gauges = _GAUGES.get(registry)
    if gauges is None:
        gauges = _GAUGES[registry] = _make_gauges(registry)
    windows = [w for w in store.monitor_windows(project, kind=PREDICTION_WINDOWS, last=10) if w["rows"] > 0]
    latest = windows[-1] if windows else None
    verdicts = (latest or {}).get("metrics", {}).get("verdicts", {}) if latest else {}
    labeled = next((w["labeled"] for w in reversed(windows) if (w["labeled"] or {}).get("met") is not None), None)
    for kind in ALERT_KINDS:
        on = (labeled or {}).get("met") is False if kind == "goal_breached" else bool(verdicts.get(kind))
        gauges["alert"].labels(kind=kind).set(1 if on else 0)
    counts = store.alert_counts(project)
    for kind in sorted(set(ALERT_KINDS) | set(counts)):
        gauges["alerts"].labels(kind=kind).set(counts.get(kind, 0))
    gauges["last_seq"].set(store.monitor_cursor(project)["last_seq"])
    metrics = (latest or {}).get("metrics") or {}
    gauges["drifted"].set(len(((metrics.get("drift") or {}).get("drifted")) or []))
    estimated = ((metrics.get("performance") or {}).get("estimated") or {}).get("value")
    gauges["metric"].labels(source="estimated").set(math.nan if estimated is None else estimated)
    value = (latest or {}).get("labeled") or {}
    gauges["metric"].labels(source="labeled").set(value.get("value", math.nan) if latest else math.nan)
    p99 = (metrics.get("latency") or {}).get("p99_ms")
    gauges["p99"].set(math.nan if p99 is None else p99)
    gauges["rejected"].set((metrics.get("rejected") or {}).get("share", math.nan) if latest else math.nan)


def _make_gauges(registry: CollectorRegistry) -> dict[str, Any]:
    from prometheus_client import Gauge

    # Every worker reads the same store, so the latest value set is the right one to export.
    mode = {"registry": registry, "multiprocess_mode": "mostrecent"}
    return {
        "alert": Gauge("loopml_monitor_alert", "1 when the latest monitored window raised this alert kind.",
                       ["kind"], **mode),
        "alerts": Gauge("loopml_monitor_alerts", "Alerts raised so far, by kind.", ["kind"], **mode),
        "last_seq": Gauge("loopml_monitor_last_seq", "The last prediction seq monitored.", **mode),
        "drifted": Gauge("loopml_monitor_drifted_columns", "Drifted columns in the latest window.", **mode),
        "metric": Gauge("loopml_monitor_goal_metric", "The goal metric in the latest window, estimated or labeled.",
                        ["source"], **mode),
        "p99": Gauge("loopml_monitor_latency_p99_ms", "p99 prediction latency in the latest window (ms).", **mode),
        "rejected": Gauge("loopml_monitor_rejected_share", "Share of the rows sent that serving refused (422) in "
                          "the latest window.", **mode),
    }
