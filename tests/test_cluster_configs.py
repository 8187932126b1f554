"""cluster/: the launcher config, the KubeRay manifests, the image and the tracking server parse,
carry the keys their tools need, and pin the project's versions (Ray, torch, torchrec, MLflow)."""

import copy
import os
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from scaler.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"


def _pin(name: str) -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (dep,) = [d for d in deps if re.match(rf"{name}(\[|==|>=|$)", d)]
    return dep


RAY = re.search(r"==([\d.]+)", _pin("ray")).group(1)
MAKEFILE = (ROOT / "Makefile").read_text()
TORCH = re.search(r"torch==([\d.]+)", MAKEFILE).group(1)
TORCHREC = re.search(r"torchrec==([\d.]+)", MAKEFILE).group(1)


def load_all(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs), path
    return docs


def by_kind(path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for doc in load_all(path):
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), (path, doc.keys())
        out.setdefault(doc["kind"], []).append(doc)
    return out


def test_every_yaml_in_cluster_parses():
    files = sorted(CLUSTER.rglob("*.yaml"))
    assert {f.relative_to(CLUSTER).as_posix() for f in files} >= {
        "ray-cluster.gpu.yaml",
        "kuberay/raycluster.yaml",
        "kuberay/rayjob.yaml",
        "kuberay/mlflow.yaml",
        "kuberay/shared-storage.yaml",
    }
    for f in files:
        load_all(f)


def test_launcher_config_passes_rays_own_schema_and_pins_the_versions():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "ray-cluster.gpu.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` runs first
    broken = {**copy.deepcopy(config), "head_node_typo": "head"}
    with pytest.raises(jsonschema.ValidationError):  # the schema is really checked
        validate_config(prepare_config(broken))
    assert config["docker"]["image"] == f"rayproject/ray:{RAY}-py311-gpu"
    setup = "\n".join(config["setup_commands"])
    assert f"torch=={TORCH}" in setup and f"torchrec=={TORCHREC} --no-deps" in setup
    assert "[gpu]" in setup  # fbgemm-gpu, not the CPU build
    assert config["head_node_type"] in config["available_node_types"]
    # every node mounts the shared folder scaler's storage check expects
    assert any("/mnt/shared" in c for c in config["initialization_commands"])
    assert any("/mnt/shared:/mnt/shared" in o for o in config["docker"]["run_options"])


def _pod_specs(cluster_spec: dict) -> list[dict]:
    head = cluster_spec["headGroupSpec"]["template"]["spec"]
    return [head] + [g["template"]["spec"] for g in cluster_spec["workerGroupSpecs"]]


def check_ray_cluster_spec(spec: dict) -> None:
    assert spec["rayVersion"] == RAY
    assert "rayStartParams" in spec["headGroupSpec"]
    groups = spec["workerGroupSpecs"]
    assert groups and all({"groupName", "replicas", "rayStartParams"} <= g.keys() for g in groups)
    for g in groups:
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    for pod in _pod_specs(spec):
        (container,) = pod["containers"]
        assert container["image"] and container["name"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts.get("shared") == "/mnt/shared"  # every node sees Tune's storage
        claims = {
            v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]
        }
        assert claims["shared"] == "scaler-shared"
    worker = groups[0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] >= 1


def test_kuberay_raycluster():
    (cluster,) = by_kind(CLUSTER / "kuberay" / "raycluster.yaml")["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    check_ray_cluster_spec(cluster["spec"])


def test_kuberay_rayjob_runs_a_scaler_sweep_the_cli_accepts():
    (job,) = by_kind(CLUSTER / "kuberay" / "rayjob.yaml")["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    check_ray_cluster_spec(spec["rayClusterSpec"])
    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "-m", "scaler.cli"]
    args = build_parser().parse_args(argv[3:])  # scaler's own parser accepts it
    assert args.command == "run" and args.address == "auto"
    assert args.storage.startswith("/mnt/shared/")
    assert args.tracking_uri == "http://mlflow:5000"
    assert (ROOT / args.spec).is_file()  # a spec that ships with the project
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == "/home/ray/scaler"  # where cluster/Dockerfile puts it


def test_tracking_server_uses_a_database_backend_and_the_pinned_mlflow():
    kinds = by_kind(CLUSTER / "kuberay" / "mlflow.yaml")
    deployments = {d["metadata"]["name"]: d for d in kinds["Deployment"]}
    services = {s["metadata"]["name"]: s for s in kinds["Service"]}
    assert {"mlflow", "mlflow-postgres"} <= deployments.keys() & services.keys()
    (server,) = deployments["mlflow"]["spec"]["template"]["spec"]["containers"]
    command = " ".join(server["args"])
    assert '--backend-store-uri "postgresql://' in command and "--serve-artifacts" in command
    version = server["image"].rsplit(":v", 1)[1]
    low, high = re.search(r">=([\d.]+),<(\d+)", _pin("mlflow")).groups()
    assert tuple(map(int, version.split("."))) >= tuple(map(int, low.split(".")))
    assert int(version.split(".")[0]) < int(high)
    assert services["mlflow"]["spec"]["ports"][0]["port"] == 5000
    mounts = {m["mountPath"] for m in server["volumeMounts"]}
    assert "/mnt/shared" in mounts  # serves the artifacts the sweep driver writes there
    # the server's own selector matches its pods
    for name, dep in deployments.items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    (claim,) = by_kind(CLUSTER / "kuberay" / "shared-storage.yaml")["PersistentVolumeClaim"]
    assert claim["metadata"]["name"] == "scaler-shared"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_image_and_local_cluster_script():
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{RAY}-py311-gpu" in dockerfile
    assert f"torch=={TORCH}" in dockerfile and f"torchrec=={TORCHREC} --no-deps" in dockerfile
    script = CLUSTER / "local_cluster.sh"
    assert os.access(script, os.X_OK)
    assert "-m scaler.localcluster up" in script.read_text()
    readme = (CLUSTER / "README.md").read_text()
    for needle in ("scaler submit", "ray up", "kubectl apply", "scaler ui", "--storage"):
        assert needle in readme, needle
