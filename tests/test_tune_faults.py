"""Faults: a trial that raises, and a driver SIGKILLed mid-sweep, in one sweep.

The sweep samples the documented fault-injection hook ``faults.fail_at_epoch`` (hyperopt
picks it per trial), is started as a subprocess, SIGKILLed once a healthy trial finished,
then resumed with ``--resume`` (in-process). The tests check that
- a trial that raises is recorded failed in Tune and MLflow and the sweep goes on;
- the resumed sweep keeps the finished trials and the searcher's history, completes, and
  leaves exactly one MLflow run per trial (none left RUNNING, no epoch logged twice);
- the driver's Ray listened on loopback only, and its SIGKILL left no Ray process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from serve_support import alive, descendants, names, outward_listeners
from tune_support import all_runs, client, env, kill_ray_under, short_temp_dir, tune_command, wait_for

from trainables.tracking import curve

pytestmark = pytest.mark.slow
NUM_SAMPLES = 4
SEARCH_SEED = 5  # the first random trials are healthy, faulty, healthy: see faulty_space


def faulty_space(tmp: Path) -> Path:
    """smoke.yaml with 2 epochs and a fault switch sampled per trial."""
    from search_spaces import SHIPPED_DIR

    raw = yaml.safe_load((SHIPPED_DIR / "smoke.yaml").read_text())
    raw["study"] = "smoke_faults"
    raw["space"]["training"]["epochs"] = 2
    raw["space"]["faults"] = {"fail_at_epoch": {"dist": "choice", "options": [None, 1]}}
    path = tmp / "smoke_faults.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    import ray

    from trainables.runner import SweepOptions, run_sweep

    tmp = tmp_path_factory.mktemp("faults")
    space = faulty_space(tmp)
    ray_tmp, ray_tmp2 = short_temp_dir("rt-kill-"), short_temp_dir("rt-resume-")
    command = tune_command(space, tmp, "--num-samples", str(NUM_SAMPLES), "--max-concurrent",
                           "2", "--num-cpus", "2", "--seed", str(SEARCH_SEED),
                           # FIFO: an ASHA stop at epoch 1 could beat the injected fault to it
                           "--scheduler", "fifo",
                           "--ray-temp-dir", str(ray_tmp), name="r")
    log = (tmp / "driver.log").open("w")
    driver = subprocess.Popen(command, cwd=tmp, env=env(), stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)

    def finished_trials():
        # Open the store only once the driver wrote its sweep file (after creating the schema):
        # a second process opening a fresh sqlite store races the migration (stack-notes).
        if driver.poll() is not None or not (tmp / "runs" / "r" / "profner_sweep.json").exists():
            return None
        runs = all_runs(tmp)
        return {r.data.tags["trial_id"]: r for r in runs
                if r.data.tags.get("profner.kind") == "trial" and r.info.status == "FINISHED"}

    try:
        before = wait_for(finished_trials, timeout=300, interval=1)
        assert before, (tmp / "driver.log").read_text()[-4000:]
        tree = descendants(driver.pid) | {driver.pid}
        tree_names, listening = names(tree), outward_listeners(tree)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        left = wait_for(lambda: not alive(tree), timeout=60) or alive(tree)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
        kill_ray_under(ray_tmp)
    at_kill = all_runs(tmp)
    history = {tid: [m.step for m in client(tmp).get_metric_history(r.info.run_id, curve("f1_7b"))]
               for tid, r in before.items()}
    try:
        result = run_sweep(SweepOptions(space=str(space), resume=True, name="r",
                                        storage=str(tmp / "runs"), num_cpus=2,
                                        ray_temp_dir=str(ray_tmp2), report=False))
    finally:
        ray.shutdown()
        kill_ray_under(ray_tmp2)
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(tmp / "runs" / "r")).trials
    return {"tmp": tmp, "before": before, "history": history, "at_kill": at_kill,
            "result": result, "trials": trials, "tree": tree_names,
            "listening": listening, "left": [] if left is True else names(left)}


def test_a_failing_trial_is_recorded_and_the_sweep_continues(killed_and_resumed) -> None:
    tmp, trials, result = (killed_and_resumed[k] for k in ("tmp", "trials", "result"))
    assert len(trials) == NUM_SAMPLES
    failing = {t.trial_id for t in trials if t.config["faults"]["fail_at_epoch"] == 1}
    assert failing and len(failing) < NUM_SAMPLES, "the seed must sample both kinds of trial"
    for trial in trials:
        assert trial.status == ("ERROR" if trial.trial_id in failing else "TERMINATED")
    assert result.num_errors == len(failing)
    assert result.best_trial_id not in failing and result.best_value is not None

    runs = {r.data.tags["trial_id"]: r for r in all_runs(tmp)
            if r.data.tags.get("profner.kind") == "trial"}
    for trial_id in failing:
        run = runs[trial_id]
        assert run.info.status == "FAILED"
        assert run.data.tags["profner.stopped_by"] == "error"
        assert "InjectedFault" in run.data.tags["profner.error"]
        # The epoch before the fault was reported and logged, once. A failing trial the kill
        # caught after its first report resumes from that checkpoint and fails after epoch 2.
        steps = [m.step for m in client(tmp).get_metric_history(run.info.run_id, curve("f1_7b"))]
        assert steps in ([1], [1, 2]), steps
    parent = [r for r in all_runs(tmp) if r.data.tags.get("profner.kind") == "sweep"][0]
    assert parent.info.status == "FINISHED" and parent.data.metrics["num_errors"] == len(failing)


def test_sigkilled_driver_resumes_without_losing_or_duplicating(killed_and_resumed) -> None:
    from ray.tune.search.hyperopt import HyperOptSearch

    tmp, trials, result, before = (killed_and_resumed[k]
                                   for k in ("tmp", "trials", "result", "before"))
    assert any(r.info.status == "RUNNING" for r in killed_and_resumed["at_kill"]), \
        "the kill came after the sweep ended"
    ids = {t.trial_id for t in trials}
    assert len(ids) == NUM_SAMPLES and all(t.status in ("TERMINATED", "ERROR") for t in trials)
    assert set(before) <= ids  # finished trials kept
    assert all(t.status == "TERMINATED" for t in trials if t.trial_id in before)

    runs = all_runs(tmp)
    parents = [r for r in runs if r.data.tags.get("profner.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("profner.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.data.tags["trial_id"] for r in children) == sorted(ids)  # one run each
    assert all(r.info.status in ("FINISHED", "FAILED") for r in children)  # none left RUNNING
    for trial_id, run in before.items():
        same = [r for r in children if r.data.tags["trial_id"] == trial_id][0]
        assert same.info.run_id == run.info.run_id and same.info.status == "FINISHED"
        steps = [m.step for m in client(tmp).get_metric_history(run.info.run_id, curve("f1_7b"))]
        assert steps == killed_and_resumed["history"][trial_id]  # not re-run
    for run in children:
        steps = [m.step for m in client(tmp).get_metric_history(run.info.run_id, curve("f1_7b"))]
        assert len(steps) == len(set(steps))  # no epoch logged twice

    # The searcher's TPE history survived the kill: one hyperopt trial per Tune trial (errored
    # ones included), each finished trial's result in it.
    searcher = HyperOptSearch()
    searcher.restore_from_dir(str(tmp / "runs" / "r"))
    history = searcher._hpopt_trials._dynamic_trials
    assert len(history) == NUM_SAMPLES
    assert sum(1 for t in history if t["result"].get("status") == "ok") == \
        sum(1 for t in trials if t.status == "TERMINATED")


def test_the_killed_driver_listened_on_loopback_and_left_no_ray_process(killed_and_resumed) -> None:
    assert any("raylet" in name for name in killed_and_resumed["tree"])  # its own local Ray
    assert killed_and_resumed["listening"] == []
    assert killed_and_resumed["left"] == []
