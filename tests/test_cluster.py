"""A real 2-node Ray cluster on loopback (`ray start --head` + `ray start --address`): sweeps
submitted as Ray jobs and joined with `--address`, trials on both nodes, the shared-storage check.

The worker node runs in a private mount namespace with an empty tmpfs over `node-local/` (when
this machine allows it: Linux, root), so one folder is genuinely not shared between the nodes.
Only the processes the cluster started are stopped at the end (never `ray stop`).
"""

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

import scaler
from scaler.localcluster import (
    LocalCluster,
    auth_headers,
    can_isolate,
    ensure_auth_token,
    main,
)

ROOT = Path(__file__).resolve().parents[1]
SCALER = [sys.executable, "-m", "scaler.cli"]
pytestmark = pytest.mark.ray

ORACLE = {
    "name": "cluster-oracle",
    "backend": "oracle",
    "seed": 1,
    "oracle": {
        "law": {"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28},
        "delay_seconds": 0.3,  # trials overlap, so the 4 concurrent ones need both nodes
    },
    "trial": {"eval_points": 4},
    "axes": {
        "params": {"n_params": {"low": 1e5, "high": 1e8, "num": 4}},
        "data": {"low": 1e5, "high": 1e8, "num": 3},
    },
    "budget": {"trials": 12},
    "resources": {"cpus_per_trial": 1, "concurrency": 4},  # 2 CPUs per node: 2 trials per node
    "tracking": {"experiment": "cluster-oracle"},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    hidden = base / "node-local"
    cluster = LocalCluster(
        workers=1,
        cpus=2,
        isolate=[str(hidden)] if can_isolate() else [],
        env_extra={"PYTHONPATH": str(ROOT)},  # the nodes import this checkout's scaler
    )
    cluster.start()
    cluster.base = base
    cluster.hidden = hidden if cluster.isolate else None
    try:
        yield cluster
    finally:
        cluster.stop()
        leftovers = [n.proc.pid for n in cluster.nodes]
        assert not leftovers


def write_spec(folder: Path, spec: dict) -> Path:
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def rest(cluster, path: str, **query) -> dict:
    url = f"{cluster.dashboard_url}{path}?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(url, headers=auth_headers())
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


ACTORS = ("/api/v0/actors", {"limit": 10000, "detail": "true"})  # every actor, dead ones too


def actors_of_class(listing: dict, class_name: str) -> dict[str, str]:
    """Actor id -> node id of the actors of a class in the dashboard's `ACTORS` listing. Matched
    on the class's own name: Ray reports Tune's function trainables in a Ray job's driver as
    "wrap_function.<locals>.ImplicitFunc", and the state API's filter only matches exactly."""
    return {
        a["actor_id"]: a["node_id"]
        for a in listing["data"]["result"]["result"]
        if a["class_name"].rsplit(".", 1)[-1] == class_name
    }


def actor_nodes(cluster, class_name: str) -> dict[str, str]:
    """Actor id -> node id of every actor of a class the cluster has run (dead ones too)."""
    path, query = ACTORS
    return actors_of_class(rest(cluster, path, **query), class_name)


def trial_actor_nodes(cluster) -> dict[str, str]:
    """The Tune function-trial actors (one per running trial; reused between trials)."""
    return actor_nodes(cluster, "ImplicitFunc")


def node_ids(cluster) -> set[str]:
    return {n["raylet"]["nodeId"] for n in cluster.alive_nodes()}


def test_the_cluster_has_two_nodes_and_the_worker_cannot_see_node_local_files(cluster):
    assert len(node_ids(cluster)) == 2
    if cluster.hidden is None:
        pytest.skip("no mount namespaces here: both nodes see every folder")
    (cluster.hidden / "marker").write_text("head only")
    code = (
        "import os, ray; ray.init(address='auto');"
        "from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as A;"
        f"f = ray.remote(num_cpus=0)(lambda: os.path.exists({str(cluster.hidden / 'marker')!r}));"
        "print(sorted(ray.get([f.options(scheduling_strategy=A(n['NodeID'], soft=False)).remote()"
        " for n in ray.nodes() if n['Alive']])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=cluster.env(), capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip().endswith("[False, True]"), out.stdout + out.stderr[-2000:]


@pytest.mark.slow  # ~20 s; test_docs' quick start submits to 2 nodes too (slow)
def test_submit_runs_an_oracle_sweep_as_a_ray_job_on_both_nodes(cluster, tmp_path):
    storage = cluster.base / "shared" / "submit"
    spec = write_spec(tmp_path, ORACLE)
    before = trial_actor_nodes(cluster)
    proc = subprocess.run(
        [
            *SCALER,
            "submit",
            str(spec),
            "--address",
            cluster.dashboard_url,
            "--working-dir",
            str(tmp_path),  # the spec travels with it; scaler comes from the nodes' PYTHONPATH
            "--storage",
            str(storage),
            "--bootstrap",
            "20",
            "--follow",
        ],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "submitted sweep cluster-oracle as Ray job" in proc.stdout
    uri = f"sqlite:///{storage / 'mlflow.db'}"
    assert f"MLflow store: {uri}" in proc.stdout
    assert "12 trials (0 failed)" in proc.stdout  # the job's own output, streamed by --follow
    trials = scaler.trials("cluster-oracle", tracking_uri=uri)
    assert len(trials) == 12 and (trials["status"] == "completed").all()
    new = set(trial_actor_nodes(cluster).items()) - set(before.items())
    assert {node for _, node in new} == node_ids(cluster)  # trials ran on both nodes


def test_submit_refuses_a_relative_storage_and_a_spec_outside_the_working_dir(tmp_path):
    spec = write_spec(tmp_path, ORACLE)
    args = [*SCALER, "submit", str(spec), "--address", "http://127.0.0.1:1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [*args, "--storage", "runs", "--working-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 2 and "--storage is runs, but must be an absolute path" in out.stderr
    other = tmp_path / "elsewhere"
    other.mkdir()
    out = subprocess.run(
        [*args, "--storage", "/shared/runs", "--working-dir", str(other)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 2 and "is outside --working-dir" in out.stderr


def test_submit_and_run_without_token_auth_say_in_one_line_what_to_set(cluster, tmp_path):
    """A client shell without RAY_AUTH_MODE=token (what cluster/local_cluster.sh printed before):
    one line naming what to set, not Ray's traceback or its retries."""
    spec = write_spec(tmp_path, ORACLE)
    env = {**cluster.env(), "PYTHONPATH": str(ROOT)}
    env.pop("RAY_AUTH_MODE")  # Ray's default: disabled
    storage = tmp_path / "runs"
    for command, address in [("submit", cluster.dashboard_url), ("run", cluster.address)]:
        args = [*SCALER, command, str(spec), "--address", address, "--storage", str(storage)]
        if command == "submit":
            args += ["--working-dir", str(tmp_path)]
        out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
        assert lines[0].startswith(
            f"scaler {command}: error: --address {address}: the Ray cluster there requires token "
            "authentication and RAY_AUTH_MODE is 'disabled' here"
        ), lines[0]
        assert "set RAY_AUTH_MODE=token" in lines[0] and "~/.ray/auth_token" in lines[0]
    assert not storage.exists() or not list(storage.glob("**/mlflow.db"))


def test_local_cluster_cpus_is_a_whole_number_as_ray_start_takes(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"^cpus is 1.5, but must be a whole number >= 0 "):
        LocalCluster(cpus=1.5, tmp=tmp_path)
    assert LocalCluster(cpus=2.0, tmp=tmp_path).cpus == 2  # passed to ray start as "2"
    for bad in ["1.5", "0", "two"]:
        with pytest.raises(SystemExit) as exit_:
            main(["up", "--cpus", bad])
        assert exit_.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last == (
            f"cluster/local_cluster.sh: error: argument --cpus: {bad} is not a whole number >= 1 "
            "(ray start --num-cpus takes an integer)"
        )


def test_a_token_is_written_when_there_is_none(tmp_path, monkeypatch):
    """`ray start` in token mode refuses to start without one (a fresh machine)."""
    path = tmp_path / "ray" / "auth_token"
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    ensure_auth_token()
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) and path.stat().st_mode & 0o777 == 0o600
    ensure_auth_token()
    assert path.read_text() == token  # an existing token is kept


@pytest.mark.slow  # ~35 s; the submit test above already runs trials on both nodes
def test_run_with_address_auto_joins_the_cluster(cluster, tmp_path):
    storage = cluster.base / "shared" / "run-auto"
    spec = write_spec(tmp_path, {**ORACLE, "name": "cluster-auto", "budget": {"trials": 8}})
    before = trial_actor_nodes(cluster)
    proc = subprocess.run(
        [*SCALER, "run", str(spec), "--address", "auto", "--storage", str(storage)],
        env=cluster.env(),  # its RAY_TMPDIR is how `auto` finds this cluster
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "8 trials (0 failed)" in proc.stdout
    new = set(trial_actor_nodes(cluster).items()) - set(before.items())
    assert {node for _, node in new} == node_ids(cluster)


def test_storage_that_one_node_cannot_see_fails_fast_saying_what_to_set(cluster, tmp_path):
    if cluster.hidden is None:
        pytest.skip("no mount namespaces here: every folder is shared by both nodes")
    storage = cluster.hidden / "runs"
    spec = write_spec(tmp_path, {**ORACLE, "name": "cluster-unshared"})
    before = trial_actor_nodes(cluster)
    start = time.time()
    proc = subprocess.run(
        [*SCALER, "run", str(spec), "--address", cluster.address, "--storage", str(storage)],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"storage {storage} is not shared by every Ray node" in proc.stderr
    assert "cannot read the driver's probe file" in proc.stderr
    assert "set --storage to a folder mounted at the same path on every node" in proc.stderr
    assert time.time() - start < 60
    assert trial_actor_nodes(cluster) == before  # no trial started
    assert not (storage / "mlflow.db").exists()  # nor a sweep run in MLflow


DLRM = {
    "name": "cluster-dlrm",
    "backend": "dlrm",
    "dlrm": {
        "data": {
            "seed": 0,
            "features": [
                {"vocab_size": 5000, "zipf_exponent": 1.0},
                {"vocab_size": 20000, "zipf_exponent": 1.1},
                {"vocab_size": 3000, "zipf_exponent": 1.0},
            ],
        },
        "model": {"embedding_dim": 8, "bottom_mlp": [16], "top_mlp": [16]},
        "train": {"eval_samples": 8192, "num_threads": 1},
    },
    "trial": {
        "samples": 65536,
        "eval_points": 3,
        "min_samples": 8192,
        "workers": 2,
        "sharding": ["table_wise", "column_wise"],
    },
    "axes": {"params": {"model.num_embeddings": [1000, 4000]}},
    "budget": {"trials": 2},
    # per trial: 0.5 CPU for the Tune function + 2 x 0.75 for the gloo workers, spread over both
    # nodes (each trial's ranks talk across nodes); two trials fill the 2 x 2 CPUs
    "resources": {
        "cpus_per_trial": 0.5,
        "cpus_per_worker": 0.75,
        "worker_placement": "spread",
        "concurrency": 2,
    },
    "tracking": {"experiment": "cluster-dlrm"},
}


@pytest.mark.slow
def test_dlrm_sweep_of_two_worker_trials_across_both_nodes(cluster, tmp_path):
    storage = cluster.base / "shared" / "dlrm"
    spec = write_spec(tmp_path, DLRM)
    before = actor_nodes(cluster, "RayTrainWorker")
    proc = subprocess.run(
        [*SCALER, "run", str(spec), "--address", cluster.address, "--storage", str(storage)],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    uri = f"sqlite:///{storage / 'mlflow.db'}"
    trials = scaler.trials("cluster-dlrm", tracking_uri=uri)
    points = scaler.points("cluster-dlrm", tracking_uri=uri)
    assert len(trials) == 2 and (trials["status"] == "completed").all()
    assert len(points) == 6  # 3 eval points each, logged once (rank 0's)
    for _, group in points.groupby("trial_id"):
        losses = group.sort_values("samples")["loss"].to_numpy()
        assert losses[-1] < losses[0]
    workers = set(actor_nodes(cluster, "RayTrainWorker").items()) - set(before.items())
    assert len(workers) == 4  # 2 trials x 2 workers
    assert {node for _, node in workers} == node_ids(cluster)
