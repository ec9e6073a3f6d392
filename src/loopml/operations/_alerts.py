"""Monitoring alerts: which kinds a window raises, their words, and delivery to a webhook with retries."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from loopml.spec import MonitorSpec

__all__ = ["ALERT_KINDS", "post_alert"]

logger = logging.getLogger("loopml.operations.monitor")  # operators filter the monitor's log by this name

ALERT_KINDS = ("goal_breached", "goal_breach_estimated", "drift", "data_quality")
_WEBHOOK_ATTEMPTS = 3
_WEBHOOK_BACKOFF_S = (0.25, 1.0)  # waits before the second and third attempt
_WEBHOOK_TIMEOUT_S = 5.0


def alert_verdicts(metrics: dict[str, Any]) -> dict[str, bool | None]:
    """Which input-side alert kinds this window raises (None: not judged)."""
    quality, drift, perf = metrics.get("quality"), metrics.get("drift"), metrics.get("performance")
    estimated = (perf or {}).get("estimated") or {}
    output = (drift or {}).get("output") or {}
    refused = bool((metrics.get("rejected") or {}).get("breach"))
    return {
        "data_quality": True if refused else None if quality is None else bool(quality["breaches"]),
        "drift": None if drift is None else bool(drift["important"] or output.get("drifted")),
        "goal_breach_estimated": None if "met" not in estimated else not estimated["met"],
    }


def window_alerts(window_id: int, metrics: dict[str, Any], goal: Any,
                   monitor: MonitorSpec) -> Iterable[tuple[str, str, dict[str, Any]]]:
    """(kind, summary, detail) of each input-side alert the window raises."""
    w = metrics["window"]
    where = f"window {window_id} (seqs {w['first_seq']}–{w['last_seq']})"
    verdicts = metrics["verdicts"]
    if verdicts["drift"]:
        drift = metrics["drift"]
        ranked = [c for c in drift["columns"] if c["drifted"]]
        output = drift.get("output") or {}
        parts = []
        if drift["important"]:
            parts.append("drift in " + ", ".join(drift["important"][:5])
                         + (f" (of {len(ranked)} drifted column(s))" if len(ranked) > len(drift["important"]) else ""))
        if output.get("drifted"):
            parts.append(f"the model's output drifted (PSI {output['psi']:.2f})")
        yield "drift", f"{where}: " + "; ".join(parts), {
            "window_id": window_id, "important": drift["important"],
            "columns": [{k: c.get(k) for k in ("column", "score", "effect", "importance", "psi", "p_adjusted")}
                        for c in ranked],
            "output": output, "domain_classifier": drift.get("domain_classifier"),
            "min_importance": monitor.drift.min_importance}
    if verdicts["data_quality"]:
        rejected = metrics.get("rejected") or {}
        breaches = [*((metrics.get("quality") or {}).get("breaches") or []),
                    *([rejected["breach"]] if rejected.get("breach") else [])]
        shown = ", ".join(rejected_text(rejected) if b["measure"] == "rejected"
                          else f"{b['column']} {b['measure']} {b['value']:.1%} > {b['limit']:.0%}"
                          for b in breaches[:4])
        yield "data_quality", f"{where}: data quality over limits: {shown}" + (" ..." if len(breaches) > 4 else ""), {
            "window_id": window_id, "breaches": breaches}
    if verdicts["goal_breach_estimated"]:
        est = metrics["performance"]["estimated"]
        side = "upper" if not goal.greater_is_better else "lower"
        yield "goal_breach_estimated", (
            f"{where}: goal {goal.describe()} likely breached before labels: estimated {est['metric']} "
            f"{est['value']:.3f} ({side} 95% bound {est['bound']:.3f}) on {est['rows']} predictions"), {
            "window_id": window_id, **est}


def rejected_text(rejected: dict[str, Any]) -> str:
    """``rejected 28.6% > 5% (3 requests; age type 2 rows, ...)``: a breach of ``quality.rejected`` in words."""
    shown = ", ".join(f"{g['column'] or 'request'} {g['kind']} {g['rows'] or g['requests']} "
                      f"{'row' if g['rows'] else 'request'}(s)" for g in rejected["columns"][:3])
    more = " ..." if len(rejected["columns"]) > 3 else ""
    return (f"rejected {rejected['share']:.1%} > {rejected['limit']:.0%} "
            f"({rejected['requests']} request(s) refused; {shown}{more})")


def post_alert(url: str, payload: dict[str, Any], *, attempts: int = _WEBHOOK_ATTEMPTS,
               backoff_s: tuple[float, ...] = _WEBHOOK_BACKOFF_S, timeout_s: float = _WEBHOOK_TIMEOUT_S
               ) -> dict[str, Any]:
    """POST ``payload`` as JSON to ``url``; retry connection errors, 429 and 5xx with backoff; never raise.

    Returns the delivery record stored with the alert: the host (never the full URL, which may hold a
    token), attempts, the last HTTP status, whether it was delivered and the last error.

    >>> post_alert("http://127.0.0.1:9/hook", {"kind": "drift"}, attempts=1)["delivered"]
    False
    """
    import httpx

    parts = urlsplit(url)
    record: dict[str, Any] = {"host": f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}", "attempts": 0,
                              "status": None, "delivered": False, "error": None}
    with httpx.Client(timeout=timeout_s) as client:
        for attempt in range(attempts):
            if attempt:
                time.sleep(backoff_s[min(attempt - 1, len(backoff_s) - 1)])
            record["attempts"] = attempt + 1
            try:
                response = client.post(url, json=payload)
            except httpx.HTTPError as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
                continue
            record["status"] = response.status_code
            if response.is_success:
                record.update(delivered=True, error=None)
                return record
            record["error"] = f"HTTP {response.status_code}"
            if response.status_code != 429 and response.status_code < 500:
                break  # the receiver refuses this alert; sending it again will not change that
    logger.warning("loopml monitor: alert %s not delivered to %s after %d attempt(s): %s", payload.get("alert_id"),
                   record["host"], record["attempts"], record["error"])
    return record
