"""`loopml demo`: the whole loop on real sales, a real server, a real shift; one retrain, then recovery."""

import json
import os

import pandas as pd
import pytest

from loopml.errors import DataError, SpecError
from loopml.maintenance.demo import _fresh_folder, default_data, run_demo

from .conftest import loopml_process


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    if not default_data().is_file():
        pytest.skip(f"{default_data()} is absent: the demo's data ships in examples/demo")
    return run_demo(tmp_path_factory.mktemp("demo") / "shop", quick=True)


def test_a_real_shift_is_detected_retrained_once_and_the_promotion_restores_the_goal(shifted):
    assert (shifted.ok, shifted.exit_code) == (True, 0), shifted.problems
    assert (shifted.retrains, shifted.promotions, shifted.champion) == (1, 1, 2)
    during = [w for w in shifted.windows if w.shifted and w.served == [1]]
    after = [w for w in shifted.windows if w.shifted and w.served == [2]]
    assert during and all(w.met is False for w in during)
    assert after and all(w.met for w in after)
    assert all(w.met for w in shifted.windows if not w.shifted)
    assert shifted.during > 2 * shifted.after and shifted.after <= 200
    assert (shifted.drift_windows, shifted.detect_windows) == (1, 2)  # the labels come one window late
    assert "goal_breached" in shifted.windows[2].alerts and shifted.windows[2].maintenance == \
        "goal breached (v1); retrained, v2 promoted"


def test_the_server_process_is_stopped_at_the_end(shifted):
    assert _gone(shifted.server_pid)


def test_the_monitoring_report_and_the_decision_log_are_written(shifted):
    if shifted.reports:
        assert shifted.reports[0].name == "monitoring.html" and shifted.reports[0].stat().st_size > 1000
    else:
        assert any("monitoring report is not written" in n for n in shifted.notes)
    gates = [(d.stage, d.gate, d.action) for d in shifted.decisions]
    assert ("maintenance", "challenger_vs_champion", "promote") in gates
    assert shifted.run_kinds[shifted.decisions[-1].run_id] == "maintain"


def test_without_a_shift_the_command_retrains_nothing_and_exits_0(tmp_path):
    if not default_data().is_file():
        pytest.skip(f"{default_data()} is absent: the demo's data ships in examples/demo")
    proc = loopml_process("demo", "--quick", "--no-shift", "--json", "--folder", str(tmp_path / "shop"),
                          cwd=tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert (report["ok"], report["retrains"], report["promotions"], report["champion"]) == (True, 0, 0, 1)
    assert all(w["met"] and w["served"] == [1] for w in report["windows"])
    assert report["story"].startswith("no shift: 6 windows of the training population")
    assert not any(d["stage"] == "model" and d["run_kind"] == "maintain" for d in report["decisions"])


def test_a_folder_with_other_files_is_refused_and_left_as_it_was(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SpecError, match="already holds files that `loopml demo` did not write; nothing was changed"):
        run_demo(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_folder_an_earlier_demo_wrote_is_replaced(tmp_path):
    folder = _fresh_folder(tmp_path / "shop")
    (folder / "sales.csv").write_text("stale")
    assert [p.name for p in _fresh_folder(folder).iterdir()] == [".loopml-demo"]


def test_a_missing_data_file_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(DataError, match="the demo's sales file is missing; .* give its path with --data"):
        run_demo(tmp_path / "shop", data=tmp_path / "absent.parquet")
    assert not (tmp_path / "shop").exists()


def test_a_data_file_without_the_sales_columns_is_refused(tmp_path):
    pd.DataFrame({"price": [1, 2]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(DataError, match=r"lacks column\(s\) trend, speed, hd, ram; the demo needs the computers"):
        run_demo(tmp_path / "shop", data=tmp_path / "other.parquet")


def test_the_command_reports_bad_input_with_exit_code_2(tmp_path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "data.csv").write_text("x\n1\n")
    proc = loopml_process("demo", "--folder", str(tmp_path / "shop"), cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "did not write; nothing was changed" in err
