"""The monitoring report: what ``loopml monitor`` stored, as one self-contained HTML page.

Built only from the store (nothing is recomputed): a summary (model versions served, windows, alerts),
drift per column over the windows (PSI, with the threshold), the distributions of the most drifted
columns side by side (the served model's training snapshot against the latest window's logged rows),
labeled and estimated performance per window with their 95% intervals against the goal, data quality
per window with the requests serving refused by column and kind, latency p50 and p99, the windows and the
alerts.

>>> report = monitoring_report(store, "benefits-outreach")     # doctest: +SKIP
>>> report.write("monitoring.html")                             # doctest: +SKIP
PosixPath('monitoring.html')
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from loopml.data.snapshot import snapshot_frame
from loopml.errors import LoopmlError, NotFoundError
from loopml.report.charts import Series, bar_chart, category_bars, histogram, line_chart
from loopml.report.page import Report, render_page, svg

if TYPE_CHECKING:
    from loopml.spec import ProjectSpec
    from loopml.store import ModelVersion, Store

__all__ = ["monitoring_context", "monitoring_report"]

_KIND = "predictions"  # the store's kind for `loopml monitor` windows
_DRIFT_LINES = 6  # columns drawn in the drift chart; the table lists the rest
_DRIFT_TABLE_ROWS = 15
_DISTRIBUTIONS = 4  # drifted columns whose distributions are drawn
_DISTRIBUTION_ROWS = 5000  # rows read per side for a distribution: the report stays fast on a big log
_DISTRIBUTION_WIDTH = 520  # px: two side by side on a laptop screen
_QUALITY_WINDOWS = 24  # the latest windows in the grouped bar chart of data quality
_ALERT_ROWS = 200
_NOTES = 20
_QUALITY_MEASURES = (("missing_increase", "missing increase"), ("out_of_range", "out of range"),
                     ("unknown_category", "unknown category"), ("wrong_type", "wrong type"))
_GOAL_TEXT = re.compile(r"^(?P<metric>\S+) (?P<op>>=|<=) (?P<threshold>[-+0-9.eE]+)")


def monitoring_report(store: Store, project: str, *, spec: ProjectSpec | None = None, windows: int = 100) -> Report:
    """The monitoring report of ``project``: its latest ``windows`` monitoring windows and all its alerts.

    ``spec`` adds what the store does not hold: the latency constraint, and the goal and limits as the
    spec says them now (without it they are read from what the windows stored). Raises
    :class:`~loopml.errors.NotFoundError` when the store holds nothing of ``project``.

    >>> html = monitoring_report(store, "benefits-outreach", spec=spec)    # doctest: +SKIP
    >>> "Drift per column" in html                                          # doctest: +SKIP
    True
    """
    return render_page("monitoring.html.j2", **monitoring_context(store, project, spec=spec, windows=windows))


def monitoring_context(store: Store, project: str, *, spec: ProjectSpec | None = None,
                       windows: int = 100) -> dict[str, Any]:
    """What the monitoring page shows, as its template's context; the report and the dashboard render it.

    >>> monitoring_context(store, "benefits-outreach")["alert_total"]     # doctest: +SKIP
    1
    """
    if windows < 1:
        raise ValueError(f"windows={windows}: give how many of the latest windows to show, 1 or more")
    stored = store.monitor_windows(project, kind=_KIND, last=windows)
    versions = {v.id: v for v in store.model_versions(project)}
    if not stored and not versions:
        raise NotFoundError(f"project '{project}' has no model versions and no monitoring windows in this store: "
                            "check the project name (`project:` in loopml.yaml), then `loopml run`, `loopml serve` "
                            "and `loopml monitor`")
    computed = [w for w in stored if w["rows"] > 0 and w["metrics"].get("window")]
    alerts = store.alerts(project)
    goal = _goal(spec, computed)
    context = {
        "title": f"{project}: monitoring",
        "subtitle": _subtitle(goal, stored, computed),
        "project": project,
        "goal": goal,
        "cards": _cards(stored, computed, alerts),
        "versions": _versions(computed, versions),
        "drift": _drift(computed, spec),
        "distributions": _distributions(store, project, computed, versions),
        "performance": _performance(computed, goal),
        "quality": _quality(computed, spec),
        "rejected": _rejected(stored),
        "latency": _latency(computed, spec),
        "windows": _windows_table(stored, alerts),
        "alerts": _alerts_table(alerts),
        "alert_total": len(alerts),
        "notes": _notes(computed),
    }
    return context


# -- summary -------------------------------------------------------------------------------------
def _goal(spec: ProjectSpec | None, computed: list[dict[str, Any]]) -> dict[str, Any]:
    """The goal's metric, threshold and text: from the spec, else as the latest window stored it."""
    if spec is not None:
        g = spec.business.goal
        return {"metric": g.metric, "threshold": g.threshold, "text": g.describe()}
    text = next((((w["metrics"].get("performance") or {}).get("goal")) for w in reversed(computed)
                 if (w["metrics"].get("performance") or {}).get("goal")), None)
    match = _GOAL_TEXT.match(text or "")
    if match is None:
        return {"metric": None, "threshold": None, "text": text}
    return {"metric": match["metric"], "threshold": float(match["threshold"]), "text": text}


def _subtitle(goal: dict[str, Any], stored: list[dict[str, Any]], computed: list[dict[str, Any]]) -> str:
    parts = [f"goal {goal['text']}"] if goal["text"] else []
    if computed:
        parts.append(f"{len(stored)} window(s) from {_when(stored[0]['starts_at'])} to {_when(stored[-1]['ends_at'])}")
    else:
        parts.append("no monitoring window yet: serve the model and run `loopml monitor`")
    return " · ".join(parts)


def _cards(stored: list[dict[str, Any]], computed: list[dict[str, Any]],
           alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    latest = computed[-1]["metrics"] if computed else {}
    verdicts = latest.get("verdicts") or {}
    labeled = next((w["labeled"] for w in reversed(computed) if (w["labeled"] or {}).get("met") is not None), None)
    kinds = Counter(a["kind"] for a in alerts)
    cards = [
        {"label": "windows", "value": f"{len(computed)}", "note": f"{len(stored) - len(computed)} empty",
         "tone": ""},
        {"label": "predictions monitored", "value": f"{sum(w['rows'] for w in computed):,}", "note": "", "tone": ""},
        {"label": "alerts", "value": str(len(alerts)), "tone": "bad" if alerts else "good",
         "note": ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"},
    ]
    for kind, label in (("drift", "latest window: drift"), ("data_quality", "latest window: data quality")):
        value = verdicts.get(kind)
        cards.append({"label": label, "value": "–" if value is None else ("alert" if value else "ok"),
                      "tone": "" if value is None else ("bad" if value else "good"), "note": ""})
    if labeled is not None:
        cards.append({"label": "latest labeled goal", "value": "met" if labeled["met"] else "missed",
                      "tone": "good" if labeled["met"] else "bad",
                      "note": f"{labeled.get('metric')} {_fmt(labeled.get('value'))} on {labeled.get('rows')} rows"})
    return cards


def _versions(computed: list[dict[str, Any]], versions: dict[int, ModelVersion]) -> list[dict[str, Any]]:
    """Each model version: its aliases and the rows it answered in the windows shown."""
    served: Counter[int] = Counter()
    for w in computed:
        for version, rows in (w["metrics"]["window"].get("model_versions") or {}).items():
            served[int(version)] += rows
    by_number = {v.version: v for v in versions.values()}
    shown = sorted(set(served) | {v.version for v in versions.values() if v.aliases})
    return [{"version": n, "family": by_number[n].family if n in by_number else "–",
             "aliases": ", ".join(by_number[n].aliases) if n in by_number else "",
             "status": by_number[n].status if n in by_number else "unknown", "rows": served.get(n, 0),
             "created": _when(by_number[n].created_at) if n in by_number else "–"} for n in shown]


# -- drift ---------------------------------------------------------------------------------------
def _drift(computed: list[dict[str, Any]], spec: ProjectSpec | None) -> dict[str, Any] | None:
    judged = [w for w in computed if w["metrics"].get("drift")]
    if not judged:
        return None
    latest = judged[-1]["metrics"]["drift"]
    threshold = spec.operations.monitor.drift.psi if spec is not None else latest["thresholds"]["psi"]
    best: dict[str, float] = {}
    drifted: set[str] = set()
    for w in judged:
        for c in w["metrics"]["drift"]["columns"]:
            best[c["column"]] = max(best.get(c["column"], 0.0), c.get("score") or 0.0)
            if c.get("drifted"):
                drifted.add(c["column"])
    ranked = sorted(best, key=lambda name: (name not in drifted, -best[name], name))
    labels = [_label(w) for w in judged]
    series = [Series(name, [_psi(w, name) for w in judged]) for name in ranked[:_DRIFT_LINES]]
    outputs = [((w["metrics"]["drift"].get("output") or {}).get("psi")) for w in judged]
    if any(v is not None for v in outputs):
        series.append(Series("model output", outputs, dashed=True))
    chart = line_chart(labels, series, title="PSI per column and window (log scale)", y_label="PSI",
                       goal=threshold, goal_label=f"PSI threshold {threshold:g}", log_y=True)
    rows = [{"column": c["column"], "kind": c.get("kind") or "–", "psi": c.get("psi"),
             "distance": c.get("wasserstein") if c.get("wasserstein") is not None else c.get("jensen_shannon"),
             "p_adjusted": c.get("p_adjusted"), "importance": c.get("importance"), "score": c.get("score"),
             "drifted": bool(c.get("drifted")), "problem": c.get("problem")}
            for c in latest["columns"][:_DRIFT_TABLE_ROWS]]
    domain = latest.get("domain_classifier") or {}
    return {"chart": svg(chart), "threshold": threshold, "rows": rows, "latest": _label(judged[-1]),
            "more": max(0, len(latest["columns"]) - _DRIFT_TABLE_ROWS), "drawn": min(len(ranked), _DRIFT_LINES),
            "columns": len(best), "domain": domain if "auc" in domain else None,
            "output": latest.get("output") if (latest.get("output") or {}).get("psi") is not None else None}


def _psi(window: dict[str, Any], column: str) -> float | None:
    for c in window["metrics"]["drift"]["columns"]:
        if c["column"] == column:
            return c.get("psi")
    return None


# -- distributions: the training snapshot against the latest window ----------------------------
def _distributions(store: Store, project: str, computed: list[dict[str, Any]],
                   versions: dict[int, ModelVersion]) -> dict[str, Any] | None:
    judged = [w for w in computed if w["metrics"].get("drift")]
    if not judged:
        return None
    window = judged[-1]
    columns = [c for c in window["metrics"]["drift"]["columns"] if c.get("kind") and not c.get("problem")]
    chosen = [c for c in columns if c.get("drifted")][:_DISTRIBUTIONS]
    lead = f"the {len(chosen)} most drifted column(s) of window {_label(window)}"
    if not chosen:
        chosen = columns[:2]
        lead = f"no column drifted in window {_label(window)}: its {len(chosen)} highest-ranked column(s)"
    version = versions.get(window["model_version_id"])
    if version is None or not chosen:
        return {"lead": lead, "charts": [], "problem": "the window's model version is not in the store"
                if version is None else "no column could be compared"}
    try:
        reference = _reference(store, version)
    except LoopmlError as exc:
        return {"lead": lead, "charts": [], "problem": f"the training snapshot of model version {version.version} "
                                                       f"cannot be read ({exc}): distributions are not drawn"}
    live, read = _live_rows(store, project, window)
    names = (f"training snapshot (v{version.version})", f"window {_label(window)}")
    charts = []
    for c in chosen:
        name = c["column"]
        ref = reference[name].tolist() if name in reference.columns else []
        cur = [row.get(name) for row in live]
        draw = histogram if c["kind"] == "numeric" else category_bars
        caption = (f"PSI {_fmt(c.get('psi'))} · {'drifted' if c.get('drifted') else 'not drifted'} · importance "
                   f"{_fmt(c.get('importance'))}")
        charts.append({"svg": svg(draw(ref, cur, title=name, names=names, width=_DISTRIBUTION_WIDTH)),
                       "caption": caption})
    sample = (f"reference: {len(reference):,} row(s) of the snapshot (a seeded sample when larger); current: "
              f"{len(live):,} readable row(s) of the window" + (f" (its latest {read:,} of {window['rows']:,})"
                                                                if read < window["rows"] else ""))
    return {"lead": lead, "charts": charts, "problem": None, "sample": sample}


def _reference(store: Store, version: ModelVersion) -> pd.DataFrame:
    """The training snapshot of ``version``, at most ``_DISTRIBUTION_ROWS`` rows (a seeded sample)."""
    return snapshot_frame(store, store.snapshot(version.snapshot_id), max_rows=_DISTRIBUTION_ROWS, seed=0)


def _live_rows(store: Store, project: str, window: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The features of the window's latest rows (at most about ``_DISTRIBUTION_ROWS``), and how many were read."""
    first, last, rows = window["first_seq"], window["last_seq"], window["rows"]
    if rows > _DISTRIBUTION_ROWS:
        # Seqs are shared by every project of the store: scale the span by the window's seqs per row.
        first = max(first, last - math.ceil(_DISTRIBUTION_ROWS * (last - first + 1) / rows) + 1)
    raw = store.logged_rows(project, first_seq=first, last_seq=last)
    features = []
    for r in raw:
        try:
            parsed = json.loads(r["features"]) if isinstance(r["features"], str) else r["features"]
        except (TypeError, ValueError):
            continue  # the window's notes already name each unreadable row
        if isinstance(parsed, dict):
            features.append(parsed)
    return features, len(raw)


# -- performance, quality, latency ---------------------------------------------------------------
def _performance(computed: list[dict[str, Any]], goal: dict[str, Any]) -> dict[str, Any] | None:
    judged = [w for w in computed if w["metrics"].get("performance")]
    if not judged:
        return None
    labeled = [w["labeled"] if (w["labeled"] or {}).get("value") is not None else {} for w in judged]
    estimated = [((w["metrics"]["performance"].get("estimated")) or {}) for w in judged]
    metric = goal["metric"] or next((d.get("metric") for d in labeled + estimated if d.get("metric")), "goal metric")
    series = [Series(f"labeled {metric}", [d.get("value") for d in labeled], low=[d.get("ci_low") for d in labeled],
                     high=[d.get("ci_high") for d in labeled])]
    if any(d.get("value") is not None for d in estimated):
        series.append(Series(f"estimated {metric} (before labels)", [d.get("value") for d in estimated],
                             low=[d.get("ci_low") for d in estimated], high=[d.get("ci_high") for d in estimated],
                             dashed=True))
    threshold = goal["threshold"]
    chart = line_chart([_label(w) for w in judged], series, title=f"{metric} per window, with 95% intervals",
                       y_label=metric, goal=threshold, goal_label=f"goal {threshold:g}" if threshold is not None
                       else "goal")
    problems = [f"{_label(w)}: {w['labeled']['problem']}" for w in judged[-5:] if (w["labeled"] or {}).get("problem")]
    problems += [f"{_label(w)}: {d['problem']}" for w, d in zip(judged[-5:], estimated[-5:], strict=True)
                 if d.get("problem")]
    return {"chart": svg(chart), "problems": problems[:_NOTES]}


def _quality(computed: list[dict[str, Any]], spec: ProjectSpec | None) -> dict[str, Any] | None:
    judged = [w for w in computed if w["metrics"].get("quality")][-_QUALITY_WINDOWS:]
    if not judged:
        return None
    limits: dict[str, float] = {}
    if spec is not None:
        limits = spec.operations.monitor.quality.model_dump()
    for w in judged:
        for b in _breaches(w):
            limits.setdefault(b["measure"], b["limit"])
    series = []
    for key, name in _QUALITY_MEASURES:
        values = [_worst(w["metrics"]["quality"]["columns"], key) for w in judged]
        if key in limits:
            name = f"{name} (limit {limits[key]:.0%})"
        series.append(Series(name, values))
    if any("rejected" in w["metrics"] for w in judged):
        name = "refused at serving" + (f" (limit {limits['rejected']:.0%})" if "rejected" in limits else "")
        series.append(Series(name, [(w["metrics"].get("rejected") or {}).get("share") for w in judged]))
    chart = bar_chart([_label(w) for w in judged], series, title="Worst column per measure and window",
                      y_label="share of rows", percent=True)
    breaches = [{"window": _label(w), "column": b["column"] or "(all requests)",
                 "measure": b["measure"].replace("_", " "), "value": b["value"], "limit": b["limit"]}
                for w in reversed(judged) for b in _breaches(w)][:50]
    return {"chart": svg(chart), "breaches": breaches, "shown": len(judged)}


def _breaches(window: dict[str, Any]) -> list[dict[str, Any]]:
    """A window's quality breaches, the share of refused rows included."""
    breach = (window["metrics"].get("rejected") or {}).get("breach")
    return [*window["metrics"]["quality"]["breaches"], *([breach] if breach else [])]


def _rejected(stored: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The requests serving refused, per window (empty ones too), column and kind; None when there were none."""
    counted = [w for w in stored if (w["metrics"].get("rejected") or {}).get("requests")][-_QUALITY_WINDOWS:]
    if not counted:
        return None
    rows = [{"window": _label(w), "column": g["column"] or "(request)", "kind": g["kind"].replace("_", " "),
             "requests": g["requests"], "rows": g["rows"], "example": g["example"] or ""}
            for w in reversed(counted) for g in w["metrics"]["rejected"]["columns"]][:_ALERT_ROWS]
    return {"rows": rows, "shown": len(counted),
            "requests": sum(w["metrics"]["rejected"]["requests"] for w in counted),
            "refused_rows": sum(w["metrics"]["rejected"]["rows"] for w in counted)}


def _worst(columns: dict[str, dict[str, Any]], key: str) -> float | None:
    values = []
    for row in columns.values():
        if key == "missing_increase":
            values.append(max(0.0, (row.get("missing") or 0.0) - (row.get("missing_reference") or 0.0)))
        elif isinstance(row.get(key), (int, float)):
            values.append(row[key])
    return max(values) if values else None


def _latency(computed: list[dict[str, Any]], spec: ProjectSpec | None) -> dict[str, Any] | None:
    judged = [w for w in computed if (w["metrics"].get("latency") or {}).get("p99_ms") is not None]
    if not judged:
        return None
    limit = spec.business.constraints.predict_p99_ms if spec is not None else None
    chart = line_chart([_label(w) for w in judged],
                       [Series("p50", [w["metrics"]["latency"]["p50_ms"] for w in judged]),
                        Series("p99", [w["metrics"]["latency"]["p99_ms"] for w in judged])],
                       title="Prediction latency per window", y_label="ms", goal=limit,
                       goal_label=f"p99 constraint {limit:g} ms" if limit is not None else "")
    return {"chart": svg(chart)}


# -- tables --------------------------------------------------------------------------------------
def _windows_table(stored: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds: dict[int, list[str]] = {}
    for a in alerts:
        kinds.setdefault(a["window_id"], []).append(a["kind"])
    rows = []
    for w in reversed(stored):
        m = w["metrics"] or {}
        estimated = ((m.get("performance") or {}).get("estimated")) or {}
        labeled = w["labeled"] or {}
        rows.append({
            "label": _label(w), "seqs": f"{w['first_seq']}–{w['last_seq']}" if w["rows"] else "–", "rows": w["rows"],
            "span": f"{_when(w['starts_at'])} – {_when(w['ends_at'])}",
            "version": (m.get("window") or {}).get("model_version", "–"),
            "drifted": len((m.get("drift") or {}).get("drifted") or []) if m.get("drift") else None,
            "breaches": len((m.get("quality") or {}).get("breaches") or []) if m.get("quality") else None,
            "estimated": _interval(estimated), "labeled": _interval(labeled), "met": labeled.get("met"),
            "labeled_rows": labeled.get("rows"), "p99": (m.get("latency") or {}).get("p99_ms"),
            "alerts": sorted(set(kinds.get(w["id"], []))),
        })
    return rows


def _alerts_table(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for a in reversed(alerts[-_ALERT_ROWS:]):
        delivery = a.get("delivery") or None
        sent = ("–" if delivery is None else
                f"{'delivered' if delivery.get('delivered') else 'not delivered'} to {delivery.get('host')} after "
                f"{delivery.get('attempts')} attempt(s)" + (f": {delivery['error']}" if delivery.get("error") else ""))
        rows.append({"id": a["id"], "kind": a["kind"], "window": f"w{a['window_id']}" if a["window_id"] else "–",
                     "at": _when(a["created_at"]), "summary": (a["detail"] or {}).get("summary", ""),
                     "delivery": sent})
    return rows


def _notes(computed: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not computed:
        return None
    latest = computed[-1]
    notes = latest["metrics"].get("notes") or []
    return {"window": _label(latest), "notes": notes[:_NOTES], "more": max(0, len(notes) - _NOTES)}


# -- formatting ----------------------------------------------------------------------------------
def _label(window: dict[str, Any]) -> str:
    return f"w{window['id']}"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(value, datetime) else "–"


def _fmt(value: Any) -> str:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return f"{value:.3g}" if ok else "–"


def _interval(d: dict[str, Any]) -> str:
    """``0.842 (0.80–0.88)``, or ``–`` without a value."""
    if d.get("value") is None:
        return "–"
    if d.get("ci_low") is None or d.get("ci_high") is None:
        return _fmt(d["value"])
    return f"{d['value']:.3f} ({d['ci_low']:.2f}–{d['ci_high']:.2f})"
