"""The whole loop as a user drives it: run, serve over real HTTP, send feedback, maintain."""

import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest
from conftest import write_spec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(project_dir):
    write_spec(project_dir, business={"problem": "x", "task": "binary", "target": "ui", "positive": "yes",
                                      "goal": {"metric": "roc_auc", "at_least": 0.58}})
    done = subprocess.run([sys.executable, "-m", "loopml", "run"], cwd=project_dir, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "loopml", "serve", "--port", str(port)], cwd=project_dir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"loopml serve did not become ready: {proc.stderr.read()}")
    yield url, project_dir
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_serve_answers_and_maintain_reads_the_feedback(server, benefits_csv):
    url, project_dir = server
    fresh = pd.read_csv(benefits_csv).iloc[2000:2100]
    rows = fresh.drop(columns=["ui", "bluecol"]).to_dict(orient="records")
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/health").json() == {"status": "ok"}
        answer = client.post("/predict", json={"rows": rows})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert answer.json()["model_version"] == 1 and len(predictions) == 100
        assert {p["prediction"] for p in predictions} <= {"yes", "no"}
        bad = client.post("/predict", json={"row": {**rows[0], "age": "forty"}})
        assert bad.status_code == 422 and bad.json()["detail"][0]["column"] == "age"
        for p, label in zip(predictions, fresh["ui"], strict=True):
            assert client.post("/feedback", json={"prediction_id": p["id"], "label": label}).status_code == 200
    done = subprocess.run([sys.executable, "-m", "loopml", "maintain", "--json"], cwd=project_dir,
                          capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout)
    assert report["decisions"][0]["evidence"]["rows"] == 100
    assert report["outcome"] in ("goal_holds", "promoted", "kept_champion")
    assert done.returncode == (1 if report["outcome"] == "kept_champion" else 0)
