"""The command line as a user runs it: a real process, real files, exit codes 0/1/2 as documented."""

import json
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import write_spec


def loopml(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loopml", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_run_registers_and_prints_the_decision_log(project_dir):
    done = loopml("run", cwd=project_dir)
    assert done.returncode == 0, done.stderr
    assert "business · goal_fits_task PASS" in done.stdout
    assert "model · goal PASS" in done.stdout
    assert "registered: model version 1 meets the goal and is the champion" in done.stdout


def test_run_json_for_scripts(project_dir):
    done = loopml("run", "--json", "--spec", "loopml.yaml", cwd=project_dir)
    payload = json.loads(done.stdout)
    assert payload["outcome"] == "registered" and payload["model_version"] == 1
    assert [d["stage"] for d in payload["decisions"]][0] == "business"


def test_unreachable_goal_exits_1_with_the_reachable_trade_off(project_dir):
    write_spec(project_dir, business={"problem": "x", "task": "binary", "target": "ui", "positive": "yes",
                                      "goal": {"metric": "roc_auc", "at_least": 0.99}})
    done = loopml("run", cwd=project_dir)
    assert done.returncode == 1
    assert "goal_not_met" in done.stdout and "reachable with this data" in done.stdout


def test_bad_spec_exits_2_and_writes_nothing(project_dir):
    doc = yaml.safe_load((project_dir / "loopml.yaml").read_text())
    doc["business"]["goal"]["metric"] = "rmse"
    (project_dir / "loopml.yaml").write_text(yaml.safe_dump(doc))
    done = loopml("run", cwd=project_dir)
    assert done.returncode == 2
    assert "business.goal.metric: found 'rmse', which does not fit task 'binary'" in done.stderr
    assert not (project_dir / ".loopml").exists()


def test_missing_spec_exits_2(tmp_path):
    done = loopml("run", cwd=tmp_path)
    assert done.returncode == 2
    assert "no such spec file; create one with `loopml init DATAFILE`" in done.stderr


def test_init_writes_a_valid_starter_and_says_what_it_guessed(tmp_path, benefits_csv):
    (tmp_path / "benefits.csv").write_bytes(benefits_csv.read_bytes())
    done = loopml("init", "benefits.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "guessed target 'ui'" in done.stdout
    assert "guessed task 'binary' (2 values: no 32%, yes 68%)" in done.stdout
    assert "guessed positive class 'no' (the rarer of the two)" in done.stdout
    spec = yaml.safe_load((tmp_path / "loopml.yaml").read_text())
    assert spec["business"]["target"] == "ui" and spec["data"]["sources"][0]["path"] == "benefits.csv"


def test_init_with_a_regression_target(tmp_path, benefits_csv):
    (tmp_path / "benefits.csv").write_bytes(benefits_csv.read_bytes())
    done = loopml("init", "benefits.csv", "--target", "tenure", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load((tmp_path / "loopml.yaml").read_text())["business"]["task"] == "regression"


def test_init_never_overwrites_a_spec(project_dir):
    before = (project_dir / "loopml.yaml").read_text()
    done = loopml("init", "benefits.csv", cwd=project_dir)
    assert done.returncode == 2
    assert "loopml.yaml already exists; nothing was written. Use --force" in done.stderr
    assert (project_dir / "loopml.yaml").read_text() == before


def test_init_with_an_unknown_target_column(tmp_path, benefits_csv):
    (tmp_path / "benefits.csv").write_bytes(benefits_csv.read_bytes())
    done = loopml("init", "benefits.csv", "--target", "nope", cwd=tmp_path)
    assert done.returncode == 2
    assert "--target: column 'nope' is not in benefits.csv; columns: stateur" in done.stderr
    assert not (tmp_path / "loopml.yaml").exists()


def test_init_with_a_missing_file(tmp_path):
    done = loopml("init", "nothing.csv", cwd=tmp_path)
    assert done.returncode == 2
    assert "nothing.csv: no such data file" in done.stderr


def test_status_before_and_after_a_run(project_dir):
    before = loopml("status", cwd=project_dir)
    assert before.returncode == 0 and "no champion yet: run `loopml run`" in before.stdout
    loopml("run", cwd=project_dir)
    after = json.loads(loopml("status", "--json", cwd=project_dir).stdout)
    assert after["champion"] == 1
    assert after["decisions"][-1]["gate"] == "pre_deploy"


def test_models_promote_and_rollback_are_audited(project_dir):
    loopml("run", cwd=project_dir)
    write_spec(project_dir, model={"budget": "2m", "seed": 1, "folds": 3, "trials": 4})
    assert loopml("run", cwd=project_dir).returncode == 0
    listed = json.loads(loopml("models", "list", "--json", cwd=project_dir).stdout)
    assert [(v["version"], v["aliases"]) for v in listed] == [(1, []), (2, ["champion"])]
    back = loopml("models", "rollback", "--reason", "v2 misbehaves", cwd=project_dir)
    assert back.returncode == 0 and "champion: v2 → v1" in back.stdout
    forward = loopml("models", "promote", "2", "--reason", "v2 fixed", cwd=project_dir)
    assert forward.returncode == 0 and "champion: v1 → v2" in forward.stdout
    decisions = json.loads(loopml("status", "--json", cwd=project_dir).stdout)["decisions"]
    assert [d["action"] for d in decisions[-2:]] == ["rollback", "promote"]
    assert decisions[-2]["evidence"]["reason"] == "v2 misbehaves"


def test_promote_an_unknown_version_exits_2(project_dir):
    loopml("run", cwd=project_dir)
    done = loopml("models", "promote", "9", "--reason", "try", cwd=project_dir)
    assert done.returncode == 2
    assert "has no model version 9; known versions: 1" in done.stderr


def test_rollback_without_history_exits_2(project_dir):
    loopml("run", cwd=project_dir)
    done = loopml("models", "rollback", "--reason", "try", cwd=project_dir)
    assert done.returncode == 2
    assert "has no earlier champion to roll back to" in done.stderr


def test_replay_of_an_unknown_run_exits_2(project_dir):
    done = loopml("run", "--replay", "42", cwd=project_dir)
    assert done.returncode == 2
    assert "run 42 of project 'benefits-test' has no recorded search to replay" in done.stderr
    assert "none yet (run `loopml run` first)" in done.stderr
