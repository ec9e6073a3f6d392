"""compute: {dask, batch, memory_limit} in loopml.yaml and `loopml run --cluster`: validated, with clear errors."""

import subprocess
import sys

import pytest
from conftest import write_spec

from loopml.errors import SpecError
from loopml.spec import load_spec
from loopml.store import Store


def _loopml(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loopml", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"COLUMNS": "140", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def _problems(folder, compute) -> list[str]:
    write_spec(folder, compute=compute)
    with pytest.raises(SpecError) as caught:
        load_spec(folder / "loopml.yaml")
    return caught.value.problems


def test_a_valid_compute_section_is_read(project_dir):
    write_spec(project_dir, compute={"dask": "tcp://10.0.0.5:8786", "batch": 8, "memory_limit": "2GB"})
    compute = load_spec(project_dir).compute
    assert (compute.dask, compute.batch, compute.memory_limit) == ("tcp://10.0.0.5:8786", 8, 2_000_000_000)
    write_spec(project_dir, compute={"dask": "scheduler.json", "memory_limit": "1.5GiB"})
    assert load_spec(project_dir).compute.memory_limit == int(1.5 * 2**30)


def test_an_address_without_scheme_or_port_is_refused_with_the_key(project_dir):
    [problem] = _problems(project_dir, {"dask": "localhost"})
    assert problem.startswith("compute.dask:")
    assert "expected a scheduler address like tcp://host:8786 or a scheduler file (.json), found 'localhost'" in problem


def test_a_memory_limit_that_is_no_size_is_refused(project_dir):
    [problem] = _problems(project_dir, {"memory_limit": "lots"})
    assert problem.startswith("compute.memory_limit:") and "expected a size such as '500MB' or '2GB'" in problem


def test_a_batch_out_of_range_and_an_unknown_key_are_both_listed(project_dir):
    problems = _problems(project_dir, {"batch": 0, "workers": 3})
    assert any(p.startswith("compute.batch:") for p in problems)
    assert any(p.startswith("compute.workers:") for p in problems)


def test_run_on_a_cluster_prints_and_stores_the_worker_of_every_trial(project_dir, local_cluster):
    done = _loopml("run", "--cluster", local_cluster.scheduler_address, cwd=project_dir)
    assert done.returncode == 0, done.stderr
    workers = set(local_cluster.scheduler_info["workers"])
    assert "worker" in done.stdout and any(w in done.stdout for w in workers)
    store = Store.open(project_dir)
    try:
        goal = next(d for d in store.decisions("benefits-test") if d.stage == "model" and d.gate == "goal")
    finally:
        store.close()
    assert {t["worker"] for t in goal.evidence["trials"]} <= workers
    assert all(row["worker"] in workers for row in goal.evidence["leaderboard"] if row["trial"] is not None)


def test_cli_cluster_option_that_is_no_address_exits_2(project_dir):
    done = _loopml("run", "--cluster", "localhost:8786", cwd=project_dir)
    assert done.returncode == 2
    assert "--cluster: expected a scheduler address like tcp://host:8786" in done.stderr
