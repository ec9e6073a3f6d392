"""One maintenance pass at a time: the store's lock, real racing processes, and a pass killed halfway."""

import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from loopml.maintenance import MaintenanceBusy, maintain_project
from loopml.maintenance.lock import LOCK_NAME, maintenance_lock
from loopml.operations.registry import promote
from loopml.store import Store
from loopml.store import schema as t

from .conftest import loopml_process


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    opened = Store.open(tmp_path, url=url)
    yield opened
    opened.close()


def test_a_free_lock_is_taken_and_a_held_one_names_its_holder(store):
    assert store.try_lock("p", "maintain", owner="a", pid=11, host="h1") is None
    holder = store.try_lock("p", "maintain", owner="b", pid=12, host="h2")
    assert (holder["owner"], holder["pid"], holder["host"]) == ("a", 11, "h1")
    assert holder["heartbeat_at"] is not None
    assert store.release_lock("p", "maintain", "b") is False  # only the holder releases it
    assert store.release_lock("p", "maintain", "a") is True
    assert store.lock_holder("p", "maintain") is None


def test_a_takeover_succeeds_once_even_when_two_try(store):
    store.try_lock("p", "maintain", owner="dead", pid=11, host="h1")
    assert store.take_over_lock("p", "maintain", previous_owner="dead", owner="b", pid=12, host="h2")
    assert not store.take_over_lock("p", "maintain", previous_owner="dead", owner="c", pid=13, host="h3")
    assert store.lock_holder("p", "maintain")["owner"] == "b"
    assert store.heartbeat_lock("p", "maintain", "c") is False and store.heartbeat_lock("p", "maintain", "b")


def test_checkpoints_hold_one_json_value_per_name(store):
    assert store.checkpoint("p", "maintain.alerts_read") is None
    store.set_checkpoint("p", "maintain.alerts_read", 3)
    store.set_checkpoint("p", "maintain.alerts_read", {"id": 7})
    assert store.checkpoint("p", "maintain.alerts_read") == {"id": 7}


def test_a_second_pass_waits_then_gives_up_with_the_holder_named(tmp_path):
    store = Store.open(tmp_path)
    with maintenance_lock(store, "p", wait_s=0, stale_after_s=60) as held:
        held.attach_run(store.start_run("p", "maintain", "x"))
        started = time.monotonic()
        with pytest.raises(MaintenanceBusy) as busy:
            with maintenance_lock(store, "p", wait_s=0.5, stale_after_s=60):
                pass
        assert time.monotonic() - started >= 0.5
    message = str(busy.value)
    assert message.startswith("another maintenance pass of project 'p' holds the lock (process ")
    assert f"on {socket.gethostname()}, run 1, since" in message and "waited 0.5s" in message
    assert "run `loopml maintain` again when it is done, or wait longer with --wait" in message
    assert busy.value.exit_code == 4


def test_the_lock_of_a_process_that_died_is_taken_over_at_once(tmp_path):
    store = Store.open(tmp_path)
    pid = _dead_pid()
    store.try_lock("p", LOCK_NAME, owner="gone", pid=pid, host=socket.gethostname())
    with maintenance_lock(store, "p", wait_s=0, stale_after_s=600) as held:
        assert held.took_over["why"] == f"its process {pid} on this host ({socket.gethostname()}) no longer exists"


def test_a_lock_with_a_stale_heartbeat_is_taken_over(tmp_path):
    store = Store.open(tmp_path)
    store.try_lock("p", LOCK_NAME, owner="far", pid=1, host="another-host")
    with store.engine.begin() as conn:
        conn.execute(sa.update(t.locks).values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=5)))
    with maintenance_lock(store, "p", wait_s=0, stale_after_s=60) as held:
        assert held.took_over["why"].startswith("its last heartbeat was 30")
        assert "more than maintenance.lock.stale_after 60s" in held.took_over["why"]


def test_the_holder_keeps_its_heartbeat_fresh_while_it_works(tmp_path):
    store = Store.open(tmp_path)
    with maintenance_lock(store, "p", wait_s=0, stale_after_s=1) as held:
        first = store.lock_holder("p", LOCK_NAME)["heartbeat_at"]
        time.sleep(0.8)
        assert store.lock_holder("p", LOCK_NAME)["heartbeat_at"] > first
        with pytest.raises(MaintenanceBusy):  # alive: a second pass does not take it over
            with maintenance_lock(store, "p", wait_s=0.3, stale_after_s=1):
                pass
        held.ensure_held()


def _wait_for_pause(proc, step: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if f"loopml: paused at {step}" in line:
            return
        if not line and proc.poll() is not None:
            pytest.fail(f"the pass ended before pausing at {step}: {proc.stderr.read()}")
    pytest.fail(f"the pass did not pause at {step} within {timeout}s")


def test_two_maintenance_processes_never_retrain_at_once(shop):
    shop.spec()
    shop.log(shop.months(13, 16))
    first = loopml_process("maintain", "--json", cwd=shop.root, env={"LOOPML_TEST_PAUSE_AT": "retrain:10"})
    _wait_for_pause(first, "retrain")
    impatient = loopml_process("maintain", "--json", "--wait", "1s", cwd=shop.root)
    patient = loopml_process("maintain", "--json", "--wait", "5m", cwd=shop.root)
    out, err = impatient.communicate(timeout=120)
    assert impatient.returncode == 4, err
    assert "error: another maintenance pass of project 'shop' holds the lock (process " in err
    assert f"{first.pid} on" in err and "waited 1s" in err
    first.communicate(timeout=300)
    assert first.returncode == 0
    out, err = patient.communicate(timeout=300)
    assert patient.returncode == 0, err
    assert '"outcome": "waiting"' in out  # it waited for the first, then found nothing new
    retrains = [d for d in shop.store.decisions("shop") if d.gate == "policy" and d.action == "retrain"]
    assert len(retrains) == 1


def test_a_pass_killed_before_promotion_leaves_a_consistent_store(shop):
    shop.spec()
    shop.log(shop.months(13, 16))
    doomed = loopml_process("maintain", "--json", cwd=shop.root, env={"LOOPML_TEST_PAUSE_AT": "promote"})
    _wait_for_pause(doomed, "promote")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)

    champion, challenger = shop.store.alias("shop", "champion"), shop.store.alias("shop", "challenger")
    assert (champion.version, challenger.version) == (1, 2)  # registered, never promoted
    assert shop.store.registered_by(challenger).gate == "window"  # registered with the decision that chose it
    assert not [d for d in shop.store.decisions("shop") if d.action == "promote" and d.stage == "maintenance"]
    killed_run = shop.store.lock_holder("shop", LOCK_NAME)["run_id"]
    assert next(r for r in shop.store.runs("shop") if r["id"] == killed_run)["status"] == "running"

    result = maintain_project(shop.spec(), shop.store, lock_wait_s=0)
    takeover = result.decisions[0]
    assert (takeover.gate, takeover.action) == ("lock", "take_over")
    assert f"took over the maintenance lock of process {doomed.pid}" in takeover.summary
    assert f"(run {killed_run}): its process {doomed.pid} on this host" in takeover.summary
    assert next(r for r in shop.store.runs("shop") if r["id"] == killed_run)["status"] == "failed"
    assert shop.store.alias("shop", "champion").version == 1


def test_a_human_promotion_during_the_pass_wins_and_the_pass_changes_nothing(shop):
    shop.spec()
    shop.log(shop.months(13, 16))
    racing = loopml_process("maintain", "--json", cwd=shop.root, env={"LOOPML_TEST_PAUSE_AT": "promote:8"})
    _wait_for_pause(racing, "promote")
    promote(shop.store, "shop", 2, reason="checked it by hand", actor="ana")
    _, err = racing.communicate(timeout=120)
    assert racing.returncode != 0
    assert "the champion of project 'shop' moved to v2 while this change was made (it expected v1)" in err
    assert shop.store.alias("shop", "champion").version == 2
    assert not [d for d in shop.store.decisions("shop") if d.action == "promote" and d.stage == "maintenance"]
    assert shop.store.lock_holder("shop", LOCK_NAME) is None  # the failed pass let go of the lock
    assert shop.store.runs("shop")[0]["status"] == "failed"
