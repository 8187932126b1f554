"""`scaler submit SPEC.yaml --address http://HEAD:8265 --storage SHARED [--working-dir .] [--follow]`

Submits a sweep to a Ray cluster as a Ray job (`JobSubmissionClient`): the project folder travels
as the job's `runtime_env` working_dir, and the job runs `scaler run SPEC --address auto` on the
head node. Prints the job id and where MLflow records the sweep; `--follow` streams the job's logs
and exits with its outcome (0 succeeded, 1 failed or stopped).
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

from scaler.spec import load_spec

# never uploaded with the working dir (Ray's limit is 500 MiB; these are local state)
EXCLUDES = [
    ".git",
    ".venv",
    "venv",
    "scaler_runs",
    "mlruns",
    "mlartifacts",
    "*.db",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".ipynb_checkpoints",
]


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="submit a sweep to a Ray cluster as a Ray job")
    p.add_argument("spec", help="search space inside --working-dir, e.g. search_spaces/demo.yaml")
    p.add_argument(
        "--address", required=True, help="the cluster's dashboard, e.g. http://HEAD:8265"
    )
    p.add_argument(
        "--storage",
        required=True,
        help="Tune storage folder mounted at this path on every node (e.g. /mnt/shared/runs)",
    )
    p.add_argument(
        "--working-dir", default=".", help="project folder shipped with the job (default: .)"
    )
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite in --storage)")
    p.add_argument(
        "--bootstrap", type=int, default=200, help="bootstrap resamples of the final fit"
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for the job (repeatable), e.g. MLFLOW_TRACKING_TOKEN=...",
    )
    p.add_argument("--pip", action="append", default=[], help="extra pip package for the job")
    p.add_argument("--job-id", help="submission id (default: Ray picks one)")
    p.add_argument("--follow", action="store_true", help="stream the job's logs until it ends")


def job_request(args) -> dict:
    """What `JobSubmissionClient.submit_job` gets; validates everything that can be checked here."""
    workdir = Path(args.working_dir).resolve()
    if not workdir.is_dir():
        raise FileNotFoundError(f"--working-dir {args.working_dir} is not a folder")
    spec_path = Path(args.spec).resolve()
    spec = load_spec(spec_path)  # a bad spec fails here, not on the cluster
    if not spec_path.is_relative_to(workdir):
        raise ValueError(
            f"the spec {args.spec} is outside --working-dir {workdir}: it travels with that folder"
        )
    storage = args.storage
    if not Path(storage).is_absolute():
        raise ValueError(
            f"--storage is {storage}, but must be an absolute path that every node mounts "
            "(a relative one would land in the job's temporary working dir)"
        )
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env {item!r}: must be KEY=VALUE")
        env[key] = value
    command = [
        "python",
        "-m",
        "scaler.cli",
        "run",
        spec_path.relative_to(workdir).as_posix(),
        "--address",
        "auto",
        "--storage",
        storage,
        "--bootstrap",
        str(args.bootstrap),
    ]
    if args.tracking_uri:
        command += ["--tracking-uri", args.tracking_uri]
    runtime_env: dict = {"working_dir": str(workdir), "excludes": EXCLUDES}
    if env:
        runtime_env["env_vars"] = env
    if args.pip:
        runtime_env["pip"] = list(args.pip)
    from scaler.tracking import default_tracking_uri

    tracking = args.tracking_uri or spec.tracking.uri or default_tracking_uri(Path(storage))
    return {
        "entrypoint": shlex.join(command),
        "runtime_env": runtime_env,
        "submission_id": args.job_id,
        "metadata": {"scaler.sweep": spec.name},
        "_spec": spec,
        "_tracking": tracking,
    }


def run(args) -> int:
    request = job_request(args)
    from ray.exceptions import AuthenticationError

    from scaler.cluster import auth_error, check_dashboard_address

    check_dashboard_address(args.address)  # nothing there: one line in seconds
    try:
        return _submit(args, request)
    except AuthenticationError:  # Ray's is a traceback and 5 lines: one line, what to set
        raise auth_error(args.address) from None


def _submit(args, request: dict) -> int:
    from ray.job_submission import JobStatus, JobSubmissionClient

    from scaler.cluster import AddressError
    from scaler.tracking import ui_hint

    spec, tracking = request.pop("_spec"), request.pop("_tracking")
    try:
        client = JobSubmissionClient(args.address)
    except OSError as exc:  # something answers, but not a Ray dashboard (requests' errors too)
        raise AddressError(f"--address {args.address}: {str(exc).splitlines()[0]}") from None
    job_id = client.submit_job(**request)
    print(f"submitted sweep {spec.name} as Ray job {job_id} to {args.address}", flush=True)
    print(f"  entrypoint:   {request['entrypoint']}")
    print(f"  MLflow store: {tracking}  (experiment {spec.tracking.experiment!r})")
    print(f"  Open the UI:  {ui_hint(tracking)}   (where that store is reachable)")
    print(f"  Follow it:    ray job logs --follow --address {args.address} {job_id}", flush=True)
    if not args.follow:
        return 0

    async def stream() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(stream())
    status = client.get_job_status(job_id)
    print(f"Ray job {job_id}: {status}", file=sys.stderr, flush=True)
    return 0 if status == JobStatus.SUCCEEDED else 1
