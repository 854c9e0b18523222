"""`profner tune --address` on a real two-node Ray cluster with an MLflow tracking server.

Both nodes run on this machine (``ray start`` head + a second ``ray start --address``), each
with one CPU and its own custom resource, under a private ``--temp-dir``; only the processes
of that temp dir are stopped afterwards (never a global ``ray stop``: other developers' Ray
runs on this machine too).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from clean_shell_support import BIN
from serve_support import free_port
from tune_support import env, kill_ray_under, run_profner, short_temp_dir, tune_command, wait_for

pytestmark = pytest.mark.slow


def ray_start(temp_dir: Path, resource: str, head_port: int | None = None,
              address: str | None = None) -> None:
    ports = ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
             "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
             "--dashboard-agent-listen-port", str(free_port()),
             "--dashboard-agent-grpc-port", str(free_port()),
             "--min-worker-port", "0", "--max-worker-port", "0"]
    role = (["--head", "--port", str(head_port), "--include-dashboard", "false",
             "--ray-client-server-port", str(free_port()), "--temp-dir", str(temp_dir)]
            if head_port else ["--address", address])
    command = [str(BIN / "ray"), "start", *role, "--node-ip-address", "127.0.0.1",
               "--num-cpus", "1", "--num-gpus", "0", "--resources", json.dumps({resource: 1}),
               "--disable-usage-stats", *ports]
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch):
    """A token-auth cluster, as ``ray start --head`` makes by default. A node or driver joining
    it must say ``RAY_AUTH_MODE=token`` (unset, Ray 2.60 joins with auth disabled and is
    refused): set here for the nodes, the ``profner`` subprocess and this process's Ray."""
    import profner_ray

    monkeypatch.setenv(profner_ray.AUTH_ENV, "")  # put back afterwards
    assert profner_ray.local_auth_mode() == "token"
    temp_dir = short_temp_dir("rt-cluster-")
    head_port = free_port()
    mlflow_port = free_port()
    server = None
    try:
        ray_start(temp_dir, "node_a", head_port=head_port)
        ray_start(temp_dir, "node_b", address=f"127.0.0.1:{head_port}")
        server = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri",
             f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
             str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port", str(mlflow_port),
             "--workers", "1"],
            env=env(), stdout=subprocess.DEVNULL, stderr=(tmp_path / "mlflow.log").open("w"))

        def healthy() -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{mlflow_port}/health",
                                              timeout=2).status == 200
            except OSError:
                return False

        assert wait_for(healthy, timeout=90), (tmp_path / "mlflow.log").read_text()[-3000:]
        yield f"127.0.0.1:{head_port}", f"http://127.0.0.1:{mlflow_port}"
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        kill_ray_under(temp_dir)


def test_sweep_on_an_existing_two_node_cluster(tmp_path: Path, cluster) -> None:
    import ray
    from mlflow.tracking import MlflowClient

    import profner_ray

    address, tracking_uri = cluster
    command = tune_command("smoke", tmp_path, "--address", address, "--num-samples", "2",
                           "--max-concurrent", "2", "--cpus-per-trial", "1",
                           "--export", str(tmp_path / "best_model"))
    command[command.index("--tracking-uri") + 1] = tracking_uri
    done = run_profner(command, cwd=tmp_path, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    profner_ray.start(address, log_to_driver=False)
    try:
        resources = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("profner-smoke")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if r.data.tags.get("profner.kind") == "trial"]
    parents = [r for r in runs if r.data.tags.get("profner.kind") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert all(r.data.metrics.get("best_f1_7b") is not None for r in children)
    # One trial per node: each trial's node carries a different custom resource.
    placed = {next(k for k in resources[r.data.tags["node_id"]] if k.startswith("node_"))
              for r in children}
    assert placed == {"node_a", "node_b"}
    # The store a browser reads: the model-training view, the sweep at a glance.
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert parents[0].data.metrics["best_f1_7b"] == max(r.data.metrics["best_f1_7b"] for r in children)
    assert all(len(r.inputs.dataset_inputs) == 2 for r in children)
    # The best model reached the server as a registered MLflow Model, loadable over HTTP.
    import mlflow
    import pandas as pd

    from profner_models.predict import Predictor

    versions = client.search_model_versions("name='profner-smoke'")
    assert len(versions) == 1
    mlflow.set_tracking_uri(tracking_uri)
    texts = ["Trabajo de enfermera en el hospital.", "Hola"]
    frame = mlflow.pyfunc.load_model(f"models:/profner-smoke/{versions[0].version}").predict(
        pd.DataFrame({"text": texts}))
    expected = Predictor(tmp_path / "best_model").predict(texts)
    assert [json.loads(e) for e in frame["entities"]] == [p.to_dict()["entities"] for p in expected]
