"""Every command in a ```bash block of README.md and cluster/README.md is a test: it is either run
as written, in a clean environment (PATH with the checkout's .venv/bin first, HOME, LANG: nothing
else of the test process), or, where it cannot run here (a cloud, Kubernetes, docker, a GPU, or
`make test` itself), validated: its files parse, its flags exist, its make target's recipe is the
one the README describes. `COMMANDS` classifies each one; a block the table does not know fails
`test_every_documented_command_is_classified`, which also writes the table (ran / validated, and
by which test) to the pytest tmp dir and stdout.

The slow part is the one-machine quick start of cluster/README.md, typed as written: the
cluster script in one process, the command it prints in another, the oracle sweep on both nodes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # the checkout's .venv/bin, which runs these tests
DOCS = ("README.md", "cluster/README.md")

RUN, SLOW, VALIDATED = "run", "run (slow)", "validated"


@dataclass(frozen=True)
class Command:
    doc: str  # e.g. "cluster/README.md"
    line: int  # where it starts in that file
    text: str  # continuation lines joined, the trailing comment dropped, spaces collapsed


def documented_commands() -> list[Command]:
    """The commands of every ```bash block of the docs, in order. A line ending in a backslash,
    or one indented under a command (a synopsis's second line), continues it."""
    found = []
    for doc in DOCS:
        lines = (ROOT / doc).read_text().splitlines()
        inside, current = False, None
        for number, line in enumerate([*lines, "```"], 1):
            if not inside:
                inside = line.strip() == "```bash"
                continue
            continues = current is not None and (current[1].endswith("\\") or line[:1].isspace())
            if continues and line.strip() != "```":
                current = (current[0], current[1].removesuffix("\\") + " " + line.strip())
                continue
            if current is not None:
                text = re.sub(r"\s+#\s.*$", "", current[1]).removesuffix("\\")
                found.append(Command(doc, current[0], " ".join(text.split())))
                current = None
            if line.strip() == "```":
                inside = False
            elif line.strip() and not line.lstrip().startswith("#"):  # not a comment line
                current = (number, line.rstrip())
    return found


# (doc, command) -> (how, by which test). The key is the command exactly as documented, so a new
# or edited command must be classified here before the suite passes.
COMMANDS: dict[tuple[str, str], tuple[str, str]] = {
    ("README.md", "make demo"): (
        VALIDATED,
        "test_make_targets_are_the_documented_ones: `make -n` runs `scaler run "
        "search_spaces/demo.yaml`, which loads (not run: minutes of DLRM training, and it writes "
        "the checkout's ./scaler_runs)",
    ),
    ("README.md", "make seed-paper"): (
        VALIDATED,
        "test_make_targets_are_the_documented_ones: `make -n` runs `scaler run` on each of the "
        "five specs of search_spaces/seed_paper/, which load, then benchmarks/seed_paper.py (not "
        "run: ~15-30 min of DLRM training, and it writes the checkout's ./scaler_runs)",
    ),
    ("README.md", "make test"): (
        VALIDATED,
        "test_make_targets_are_the_documented_ones: `make -n` runs lint and "
        '`pytest -m "not slow"` (not run: this suite is part of it)',
    ),
    (
        "README.md",
        "make install ACCEL=gpu TORCH_INDEX=<PyTorch's wheel index for your CUDA version, e.g. "
        ".../whl/cu128>",
    ): (
        VALIDATED,
        "test_make_targets_are_the_documented_ones: `make -n` passes the index to pip and "
        "installs the gpu extra (not run: no GPU)",
    ),
    ("cluster/README.md", "make install"): (
        VALIDATED,
        "test_make_targets_are_the_documented_ones: `make -n` is the README's three pip steps "
        "(the suite runs on the .venv it made)",
    ),
    ("cluster/README.md", "cluster/local_cluster.sh --workers 1 --cpus 2"): (
        SLOW,
        "test_quick_start_as_written (and the commands it prints: test_printed_run_commands)",
    ),
    (
        "cluster/README.md",
        "RAY_AUTH_MODE=token .venv/bin/scaler submit search_spaces/oracle.yaml --address "
        'http://127.0.0.1:PORT --storage "$PWD/scaler_runs/cluster" --follow',
    ): (SLOW, "test_quick_start_as_written: the line the script prints, --storage in a tmp dir"),
    (
        "cluster/README.md",
        '.venv/bin/scaler ui --tracking-uri "sqlite:///$PWD/scaler_runs/cluster/mlflow.db"',
    ): (
        SLOW,
        "test_quick_start_ui: the line the script prints, on the quick start's store, with a "
        "free --port (5000 may be taken on a shared machine)",
    ),
    (
        "README.md",
        'scaler replay tests/data/chinchilla_epoch_extracted.csv --x "N=Model Size,D=Training '
        'FLOP/(6*Model Size)" --y loss --budget 0.2 --target-top-cost 0.1 --policy adaptive '
        "--seeds 5 [--json]",
    ): (SLOW, "test_replay_from_csv (with the optional --json; ~1-3 min)"),
    (
        "README.md",
        "scaler replay --from-sweep oracle-demo --tracking-uri sqlite:///scaler_runs/mlflow.db "
        "--budget 0.2 --target-top-cost 0.1 --policy adaptive",
    ): (
        SLOW,
        "test_replay_from_the_quick_starts_sweep: in a folder whose scaler_runs/ is its store",
    ),
}
SYNOPSES = [  # placeholders (SPEC.yaml, URI, [optional]): every subcommand and flag must exist
    ("README.md", "scaler run SPEC.yaml [--address ADDR] [--tracking-uri URI] [--storage PATH] "
     "[--bootstrap N]"),
    ("README.md", 'scaler resume SWEEP [--storage PATH] [--tracking-uri URI] (see "Reliability")'),
    ("README.md", "scaler query SWEEP [--points] [--csv] [--tracking-uri URI]"),
    ("README.md", "scaler ui [--tracking-uri URI] [--port 5000] [--host 127.0.0.1] [--open]"),
    ("README.md", "scaler submit SPEC.yaml --address http://HEAD:8265 --storage /shared/path "
     "[--follow]"),
    ("README.md", "scaler report SWEEP [--out DIR] [--tracking-uri URI] [--bootstrap 100] "
     "[--gap-threshold 0.01] [--memory-cap BYTES] [--json] [--no-log]"),
    ("README.md", "scaler fit DATA.csv --form power|joint --x COL[,COL] --y COL [--drop-top-loss K] "
     "[--bootstrap N] [--seed S] [--level 0.95] [--delta 1e-3] [--predict OTHER.csv] [--json]"),
    ("README.md", "scaler resume SWEEP [--storage PATH] [--tracking-uri URI]"),
    ("README.md", "scaler run SPEC.yaml --resume"),
    ("README.md", "scaler submit SPEC.yaml --address http://HEAD:8265 --storage /shared/path "
     "[--working-dir .] [--follow]"),
    ("README.md", "scaler run SPEC.yaml --address auto --storage /shared/path"),
    ("cluster/README.md", "scaler submit SPEC.yaml --address http://HEAD:8265 --storage "
     "/shared/path [--working-dir .] [--tracking-uri URI] [--env KEY=VALUE ...] [--pip PKG ...] "
     "[--job-id ID] [--follow]"),
]  # fmt: skip
for _key in SYNOPSES:
    COMMANDS[_key] = (VALIDATED, "test_synopses_name_real_subcommands_and_flags")
CLUSTER_ONLY = [  # need a cloud or Kubernetes: their files parse, the scaler part parses
    "scaler submit search_spaces/demo.yaml --address http://127.0.0.1:8265 --storage "
    "/mnt/shared/scaler_runs --follow",
    "ray attach cluster/ray-cluster.gpu.yaml -p 5000 -- scaler ui --host 0.0.0.0 --tracking-uri "
    "sqlite:////mnt/shared/scaler_runs/mlflow.db",
    "docker build -f cluster/Dockerfile -t REGISTRY/scaler:0.1.0 . && docker push "
    "REGISTRY/scaler:0.1.0",
    "kubectl apply -f cluster/kuberay/shared-storage.yaml -f cluster/kuberay/mlflow.yaml",
    "kubectl apply -f cluster/kuberay/raycluster.yaml",
    "kubectl port-forward svc/scaler-head-svc 8265:8265 &",
    "scaler submit search_spaces/demo.yaml --address http://127.0.0.1:8265 --storage "
    "/mnt/shared/scaler_runs --tracking-uri http://mlflow:5000 --follow",
    "kubectl apply -f cluster/kuberay/rayjob.yaml",
    "kubectl logs -f job/scaler-demo",
]
for _text in CLUSTER_ONLY:
    COMMANDS[("cluster/README.md", _text)] = (
        VALIDATED,
        "test_cluster_commands_are_valid (needs a cloud / Kubernetes / docker; "
        "tests/test_cluster_configs.py checks the files in depth)",
    )


PREPARE_CRITEO = "scaler data prepare-criteo criteo/raw/day_*.gz --out criteo/binary --workers 8"
COMMANDS[("README.md", PREPARE_CRITEO)] = (
    VALIDATED,
    "test_prepare_criteo_command_is_valid: it parses and search_spaces/criteo_binary.yaml reads "
    "its --out (not run: needs the Criteo 1TB day files; tests/test_criteo_binary.py runs the "
    "same command on generated days)",
)


def doc_command(doc: str, text: str) -> Command:
    """The documented command with this exact text (the test fails if the docs lost it)."""
    (found,) = [c for c in documented_commands() if (c.doc, c.text) == (doc, text)]
    return found


def clean_env() -> dict[str, str]:
    """A new user's shell: the checkout's .venv/bin on PATH, HOME (Ray's token lives in
    ~/.ray/auth_token), LANG, TMPDIR; nothing else of the test process."""
    env = {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(Path.home()),
        "LANG": "C.UTF-8",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    if os.environ.get("TMPDIR"):
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


def sh(command: str, cwd: Path = ROOT, **popen) -> subprocess.Popen:
    """`command` as a shell runs it, in a clean environment, its own process group."""
    return subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=clean_env(),
        start_new_session=True,
        text=True,
        **popen,
    )


def run_sh(command: str, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = sh(command, cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        _kill_group(proc)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


# --- the listing --------------------------------------------------------------------------------
def test_every_documented_command_is_classified(tmp_path):
    commands = documented_commands()
    assert len(commands) >= 30, "the bash blocks were not found"
    rows = [f"| {'how':<11} | {'where':<22} | command | by |", "|---|---|---|---|"]
    for c in commands:
        how, by = COMMANDS.get((c.doc, c.text), ("UNCLASSIFIED", ""))
        rows.append(f"| {how:<11} | {c.doc}:{c.line:<5} | `{c.text}` | {by} |")
    table = "\n".join(rows)
    (tmp_path / "documented_commands.md").write_text(table + "\n")
    print(f"\n{table}\n(also in {tmp_path / 'documented_commands.md'})")
    unclassified = [c for c in commands if (c.doc, c.text) not in COMMANDS]
    assert not unclassified, (
        "documented commands no test runs or validates; classify each in COMMANDS of "
        "tests/test_docs.py (run as written, slow, or validated, and by which test):\n"
        + "\n".join(f"  {c.doc}:{c.line}: {c.text}" for c in unclassified)
    )
    stale = set(COMMANDS) - {(c.doc, c.text) for c in commands}
    assert not stale, f"classified but no longer in the docs; remove from COMMANDS: {stale}"


# --- validated ----------------------------------------------------------------------------------
def _subparsers():
    from scaler.cli import build_parser

    (action,) = [a for a in build_parser()._actions if a.dest == "command"]
    return action.choices


def test_synopses_name_real_subcommands_and_flags():
    subparsers = _subparsers()
    for doc, text in SYNOPSES:
        doc_command(doc, text)
        words = text.split()
        assert words[0] == "scaler" and words[1] in subparsers, text
        parser = subparsers[words[1]]
        options = parser._option_string_actions
        for i, word in enumerate(words[2:], 2):
            flag = word.strip("[]")
            if not flag.startswith("--"):
                continue
            assert flag in options, f"{doc}: `scaler {words[1]}` has no {flag} ({text})"
            choices = options[flag].choices
            shown = words[i + 1].strip("[]") if i + 1 < len(words) else ""
            if choices and "|" in shown:
                assert set(shown.split("|")) <= set(choices), (text, choices)


def test_prepare_criteo_command_is_valid():
    from scaler.cli import build_parser
    from scaler.spec import SpecError, load_spec

    doc_command("README.md", PREPARE_CRITEO)
    args = build_parser().parse_args(shlex.split(PREPARE_CRITEO)[1:])
    assert (args.command, args.action, args.out, args.workers) == (
        "data",
        "prepare-criteo",
        "criteo/binary",
        8,
    )
    spec = yaml.safe_load((ROOT / "search_spaces" / "criteo_binary.yaml").read_text())
    assert spec["dlrm"]["data"]["path"] == args.out
    # without the prepared days, the spec's only fault is the missing manifest
    with pytest.raises(SpecError, match=r"dlrm.data.criteo_binary: .*manifest.json does not exist"):
        load_spec(ROOT / "search_spaces" / "criteo_binary.yaml")


def _make_dry_run(*args: str) -> str:
    out = subprocess.run(
        ["make", "-n", "-B", *args],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_make_targets_are_the_documented_ones():
    from scaler.spec import load_spec

    doc_command("README.md", "make demo")
    demo = _make_dry_run("demo")
    assert "scaler run search_spaces/demo.yaml" in demo
    load_spec(ROOT / "search_spaces" / "demo.yaml")  # a spec the sweep would accept
    doc_command("README.md", "make seed-paper")
    seed = _make_dry_run("seed-paper")
    for stem in ("data", "embedding_rows", "embedding_dim", "over_arch", "all_mlp"):
        spec = f"search_spaces/seed_paper/{stem}.yaml"
        assert f"scaler run {spec} --storage scaler_runs/seed_paper" in seed, stem
        load_spec(ROOT / spec)
    assert "benchmarks/seed_paper.py --storage scaler_runs/seed_paper" in seed
    doc_command("README.md", "make test")
    test = _make_dry_run("test")
    assert "ruff check ." in test and "ruff format --check ." in test
    assert 'pytest -m "not slow" -q' in test
    doc_command("cluster/README.md", "make install")
    install = _make_dry_run("install")
    for step in [
        "install -q torch==2.13.0",
        "install -q -e '.[cpu,dev]'",
        "torchrec==1.8.0 --no-deps",
    ]:
        assert step in install, step
    (gpu,) = [c for c in documented_commands() if c.text.startswith("make install ACCEL=gpu")]
    assert gpu.text.startswith("make install ACCEL=gpu TORCH_INDEX=<")  # <...>: a placeholder
    index = "https://download.pytorch.org/whl/cu128"  # what it stands for
    install = _make_dry_run("install", "ACCEL=gpu", f"TORCH_INDEX={index}")
    assert f"torch==2.13.0 --index-url {index}" in install
    assert "install -q -e '.[gpu,dev]'" in install


def _k8s_docs(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all({"apiVersion", "kind", "metadata"} <= d.keys() for d in docs), path
    return docs


def test_cluster_commands_are_valid(monkeypatch):
    """Sections 2 and 3 of cluster/README.md need AWS, Kubernetes or docker: each command's
    files exist and parse, its names match the manifests, and its scaler part is accepted by
    scaler's own parser (a submit: by the checks it makes before contacting the cluster)."""
    from ray.scripts.scripts import attach

    from scaler.cli import build_parser
    from scaler.cli.submit import job_request

    monkeypatch.chdir(ROOT)  # the docs' commands run in the project folder
    for text in CLUSTER_ONLY:
        doc_command("cluster/README.md", text)
        words = shlex.split(text.removesuffix("&"))
        if "scaler" in words:  # `scaler ...`, or `ray attach ... -- scaler ui ...`
            args = build_parser().parse_args(words[words.index("scaler") + 1 :])
            if args.command == "submit":
                request = job_request(args)  # the spec loads, --storage is absolute
                assert request["entrypoint"].startswith("python -m scaler.cli run")
        if words[:2] == ["ray", "attach"]:
            config = yaml.safe_load((ROOT / words[2]).read_text())  # schema: test_cluster_configs
            assert config["cluster_name"]
            options = {opt for p in attach.params for opt in p.opts}
            assert {"-p", "--port-forward"} <= options
        if words[0] == "docker":
            assert (ROOT / words[words.index("-f") + 1]).is_file()
            tag = words[words.index("-t") + 1]
            for manifest in ("raycluster.yaml", "rayjob.yaml"):  # "put the tag in ..."
                assert f"image: {tag}" in (ROOT / "cluster" / "kuberay" / manifest).read_text()
        if words[:2] == ["kubectl", "apply"]:
            files = [words[i + 1] for i, w in enumerate(words) if w == "-f"]
            assert files and all(_k8s_docs(ROOT / f) for f in files)
        if words[:2] == ["kubectl", "port-forward"]:
            (cluster,) = _k8s_docs(ROOT / "cluster" / "kuberay" / "raycluster.yaml")
            assert words[2] == f"svc/{cluster['metadata']['name']}-head-svc"  # KubeRay's name
            head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
            port = int(words[3].split(":")[1])
            assert port in {p["containerPort"] for p in head["ports"]}
        if words[:2] == ["kubectl", "logs"]:
            (job,) = _k8s_docs(ROOT / "cluster" / "kuberay" / "rayjob.yaml")
            assert words[-1] == f"job/{job['metadata']['name']}"  # KubeRay's submitter Job


# --- run as written: the one-machine quick start -------------------------------------------------
QUICK_START = "cluster/local_cluster.sh --workers 1 --cpus 2"
SUBMIT = (
    "RAY_AUTH_MODE=token .venv/bin/scaler submit search_spaces/oracle.yaml --address "
    'http://127.0.0.1:PORT --storage "$PWD/scaler_runs/cluster" --follow'
)
UI = '.venv/bin/scaler ui --tracking-uri "sqlite:///$PWD/scaler_runs/cluster/mlflow.db"'
STORAGE_WORDS = '"$PWD/scaler_runs/cluster"'


@dataclass
class QuickStart:
    proc: subprocess.Popen  # the script, in its own process group
    printed: list[str]  # the commands it printed
    dashboard: str
    storage: Path  # where the submitted sweep's --storage went instead of $PWD/scaler_runs
    submit: subprocess.CompletedProcess | None = None

    def rest(self, path: str, **query) -> dict:
        from scaler.localcluster import auth_headers

        url = f"{self.dashboard}{path}?{urllib.parse.urlencode(query)}"
        request = urllib.request.Request(url, headers=auth_headers())
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.load(r)

    def node_ids(self) -> set[str]:
        summary = self.rest("/nodes", view="summary")["data"]["summary"]
        return {n["raylet"]["nodeId"] for n in summary if n["raylet"]["state"] == "ALIVE"}

    def trial_nodes(self) -> dict[str, str]:
        """Actor id -> node id of every Tune trial actor the cluster ran."""
        from tests.test_cluster import ACTORS, actors_of_class

        path, query = ACTORS
        return actors_of_class(self.rest(path, **query), "ImplicitFunc")


def _read_printed(proc: subprocess.Popen, timeout: float) -> list[str]:
    """The script's output up to "Ctrl-C stops it." (the commands are the indented lines)."""
    deadline, lines = time.time() + timeout, []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break  # it exited
        lines.append(line.rstrip("\n"))
        if line.startswith("Ctrl-C stops it."):
            return lines
    raise AssertionError(f"{QUICK_START} did not come up: " + "\n".join(lines)[-3000:])


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory):
    """`cluster/local_cluster.sh --workers 1 --cpus 2` as typed, in a clean shell; at the end,
    Ctrl-C (SIGINT to the script), which must stop its nodes."""
    command = doc_command("cluster/README.md", QUICK_START).text
    proc = sh(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = _read_printed(proc, 240)
        printed = [line.strip() for line in out if line.startswith("  ")]
        dashboard = re.search(r"--address (http://127\.0\.0\.1:\d+)", printed[0]).group(1)
        yield QuickStart(proc, printed, dashboard, tmp_path_factory.mktemp("quick") / "cluster")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in its terminal
        rest = proc.communicate(timeout=90)[0]
        assert proc.returncode == 0, rest[-3000:]
        tmpdir = re.search(r"RAY_TMPDIR=(\S+)", "\n".join(printed)).group(1)
        assert not Path(tmpdir).exists()  # its nodes stopped, their session files removed
    finally:
        _kill_group(proc)


@pytest.mark.ray
@pytest.mark.slow  # ~3 min: the cluster, then the 60-trial oracle sweep of the doc's command
def test_quick_start_as_written(quick_start):
    """The line the script prints is the doc's command (but for the port), complete: run in a
    second clean shell (only --storage moved to a tmp dir), the oracle sweep runs on both nodes."""
    port = quick_start.dashboard.rsplit(":", 1)[1]
    submit = doc_command("cluster/README.md", SUBMIT).text
    assert submit.replace("PORT", port) in quick_start.printed
    assert doc_command("cluster/README.md", UI).text in quick_start.printed
    assert len(quick_start.node_ids()) == 2
    before = quick_start.trial_nodes()
    printed = next(line for line in quick_start.printed if " submit " in line)
    out = run_sh(printed.replace(STORAGE_WORDS, shlex.quote(str(quick_start.storage))), timeout=900)
    quick_start.submit = out
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "60 trials (0 failed)" in out.stdout
    assert "Ray job " in out.stderr and ": SUCCEEDED" in out.stderr
    import scaler

    uri = f"sqlite:///{quick_start.storage / 'mlflow.db'}"
    trials = scaler.trials("oracle-demo", tracking_uri=uri)
    assert len(trials) == 60 and (trials["status"] == "completed").all()
    new = set(quick_start.trial_nodes().items()) - set(before.items())
    placed = {node for _, node in new if node}  # an actor killed before it was placed has none
    assert placed == quick_start.node_ids()  # trials ran on both nodes


@pytest.mark.ray
@pytest.mark.slow
def test_quick_start_ui(quick_start, tmp_path):
    """The printed `scaler ui` line serves the MLflow UI on the quick start's store (a free
    --port added: 5000 may be taken on a shared machine)."""
    from scaler.localcluster import free_port

    if quick_start.submit is None or quick_start.submit.returncode != 0:
        pytest.skip("needs the quick start's sweep (test_quick_start_as_written)")
    printed = next(line for line in quick_start.printed if " ui " in line)
    port = free_port()
    command = printed.replace(
        '"sqlite:///$PWD/scaler_runs/cluster/mlflow.db"',
        shlex.quote(f"sqlite:///{quick_start.storage / 'mlflow.db'}"),
    )
    log = tmp_path / "ui.log"  # a file, not an unread pipe: a full pipe blocks the server
    with log.open("w") as out:
        proc = sh(f"{command} --port {port}", stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search"
                request = urllib.request.Request(url, data=b'{"max_results": 10}', method="POST")
                request.add_header("Content-Type", "application/json")
                with urllib.request.urlopen(request, timeout=5) as r:
                    names = {e["name"] for e in json.load(r)["experiments"]}
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
                time.sleep(1)
        assert "scaler-oracle" in names
    finally:
        _kill_group(proc, signal.SIGTERM)
        proc.wait(timeout=30)
        _kill_group(proc)


SMALL_SPEC = {  # SPEC.yaml of the printed `scaler run` lines: any search space
    "name": "docs-run",
    "backend": "oracle",
    "seed": 1,
    "oracle": {"law": {"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28}},
    "trial": {"eval_points": 3},
    "axes": {
        "params": {"n_params": {"low": 1e5, "high": 1e8, "num": 4}},
        "data": {"low": 1e5, "high": 1e8, "num": 2},
    },
    "budget": {"trials": 8},
    "resources": {"cpus_per_trial": 1, "concurrency": 4},
    "tracking": {"experiment": "docs-run"},
}


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("how", ["--address auto", "--address 127.0.0.1:"])
def test_printed_run_commands(quick_start, tmp_path, how):
    """The printed `scaler run` lines, complete as printed: SPEC.yaml is a small oracle spec and
    --storage a tmp dir (their default, ./scaler_runs, would be the checkout's)."""
    (line,) = [line for line in quick_start.printed if " run SPEC.yaml " + how in line]
    spec = tmp_path / "docs-run.yaml"
    spec.write_text(yaml.safe_dump(SMALL_SPEC))
    command = line.replace("SPEC.yaml", shlex.quote(str(spec)))
    out = run_sh(f"{command} --storage {shlex.quote(str(tmp_path / 'runs'))}", timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "8 trials (0 failed)" in out.stdout


@pytest.mark.ray
@pytest.mark.slow
def test_replay_from_the_quick_starts_sweep(quick_start, tmp_path):
    """README's `scaler replay --from-sweep oracle-demo` reads ./scaler_runs/mlflow.db, where
    `scaler run search_spaces/oracle.yaml` puts it: here, a folder whose scaler_runs/ is the
    store the quick start's sweep wrote."""
    if quick_start.submit is None or quick_start.submit.returncode != 0:
        pytest.skip("needs the quick start's sweep (test_quick_start_as_written)")
    (command,) = [c for c in documented_commands() if c.text.startswith("scaler replay --from-")]
    (tmp_path / "scaler_runs").symlink_to(quick_start.storage)
    out = run_sh(command.text, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "adaptive" in out.stdout


@pytest.mark.slow  # 1-3 min on 2 cores
def test_replay_from_csv():
    (command,) = [c for c in documented_commands() if c.text.startswith("scaler replay tests/")]
    assert command.text.endswith(" [--json]")  # optional: run with it, to read the result
    out = run_sh(command.text.replace("[--json]", "--json"), timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["median"]["spent_fraction"] <= 0.2 + 1e-9
