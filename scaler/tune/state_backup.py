"""A consistent copy of Ray Tune's experiment state, written atomically into the sweep's storage.

At each checkpoint Tune writes its state to a staging folder and then copies the folder to storage
file by file, overwriting each file in place (pyarrow; not atomic). A driver killed during that
copy leaves one or more files truncated: `Tuner.restore` then fails on the trial list
(`experiment_state-*.json`) or the searcher wrappers' state (`search_gen_state-*.json`), and the
searcher's and callbacks' states (`searcher-state-*.pkl`, `callback-states-*.pkl`) are lost. This
was seen once on a loaded machine: an empty `searcher-state` file.

`StateBackup`, the sweep's Tune callback after the MLflow one, copies the four files of each
checkpoint into one file in storage (`BACKUP`). Tune asks the callbacks for their state at the
end of each save, when the other three files are already written, and before it uploads them.
The copy is written to a temporary file and renamed, so it is always whole. Tune never copies
it: it is written to storage only, and Tune's restore fetches only .json and .pkl files to
staging. Before `Tuner.restore`, `recover` puts the backup's four files in place of Tune's copy.
They come from one save, the latest, so they agree with each other even where a kill left
Tune's copy half from the checkpoint before.

`tuner.pkl` is at risk too, once a sweep has been resumed: Tune's restore copies every .json and
.pkl file of the experiment into staging, so each later upload rewrites it in place. The backup
keeps the copy the driver started from (it never changes) and `recover` puts it back as well. For
the same reason scaler's own files in the experiment folder are neither .json nor .pkl
(`scaler.resume.SPEC_FILE`, `BACKUP`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
from pathlib import Path

import ray.cloudpickle as cloudpickle
from ray.tune import Callback

log = logging.getLogger(__name__)

BACKUP = "scaler-state.backup"
TUNE_FILES = (  # the files Tune writes at each checkpoint, by session
    "experiment_state-{}.json",
    "search_gen_state-{}.json",
    "searcher-state-{}.pkl",
    "callback-states-{}.pkl",
)
TUNER_FILE = "tuner.pkl"  # the Tuner's settings, written once by `Tuner(...)`
SEARCHER_FILE = re.compile(r"searcher-state-(.+)\.pkl$")  # Tune saves it under a temporary prefix


def read_state(path) -> object | None:
    """A pickle of the sweep's own (Tune's or our backup, in the sweep's own storage), or None if
    it is missing or truncated."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None


def readable(path: Path) -> bool:
    """The trial list is JSON; the other three are pickles (search_gen_state too, despite its
    .json suffix)."""
    if path.name.startswith("experiment_state-"):
        try:
            json.loads(path.read_bytes())
            return True
        except (OSError, ValueError):
            return False
    return read_state(path) is not None


def session_of(searcher_file: str) -> str | None:
    """The Tune session a searcher checkpoint path belongs to."""
    match = SEARCHER_FILE.search(os.path.basename(searcher_file))
    return match.group(1) if match else None


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class StateBackup(Callback):
    """Writes `BACKUP` (module docstring) at every checkpoint, after the callbacks in `others`
    (Tune appends its own stateless logger callbacks after this one).

    `searcher.saved_to` is (staging folder, session) of the searcher's latest save, or None before
    the first one. `others` are the callbacks before this one, whose states make up
    `callback-states`.
    """

    def __init__(self, experiment_dir: Path, searcher, others: list[Callback]):
        self.experiment_dir = Path(experiment_dir)
        self.searcher = searcher
        self.others = others
        self.tuner: bytes | None = None  # tuner.pkl as this driver found it, read at first save

    def get_state(self) -> None:
        saved = self.searcher.saved_to
        if saved is not None:
            try:
                self.write(Path(saved[0]), saved[1])
            except OSError as e:  # a full disk must not end the sweep; a stale copy must not stay
                log.warning("could not back up Tune's state to %s: %s", self.experiment_dir, e)
                with contextlib.suppress(OSError):
                    (self.experiment_dir / BACKUP).unlink(missing_ok=True)
        return None  # nothing of its own to restore

    def write(self, staging: Path, session: str) -> None:
        files = {}
        for template in TUNE_FILES[:3]:
            path = staging / template.format(session)
            if path.exists():
                files[path.name] = path.read_bytes()
        # what Tune's CallbackList writes to callback-states: {position: state}, this one None
        states = {i: c.get_state() for i, c in enumerate(self.others)} | {len(self.others): None}
        files[TUNE_FILES[3].format(session)] = cloudpickle.dumps(states)
        if self.tuner is None and readable(self.experiment_dir / TUNER_FILE):
            self.tuner = (self.experiment_dir / TUNER_FILE).read_bytes()
        if self.tuner is not None:
            files[TUNER_FILE] = self.tuner
        self.experiment_dir.mkdir(parents=True, exist_ok=True)
        payload = pickle.dumps({"session": session, "files": files})
        write_atomic(self.experiment_dir / BACKUP, payload)


def recover(experiment_dir: Path) -> list[str]:
    """Before `Tuner.restore`: put the backup's files (the latest checkpoint, whole and from one
    save) in place of Tune's copy, which a kill during the upload can leave truncated, or
    readable but half from the checkpoint before. Returns the names of Tune's newest files that
    were unreadable. Raises ValueError if one is unreadable and there is no usable backup.
    """
    newest = [max(experiment_dir.glob(t.format("*")), default=None) for t in TUNE_FILES]
    tuner = experiment_dir / TUNER_FILE
    bad = [p.name for p in [*newest, tuner] if p is not None and p.exists() and not readable(p)]
    backup = read_state(experiment_dir / BACKUP)
    usable = isinstance(backup, dict) and "files" in backup
    # the backup is written before each upload, so it is never older than Tune's copy; a later
    # session in storage would mean a failed backup (which removes the file): keep Tune's copy
    if usable and newest[0] is not None:
        usable = newest[0].name <= TUNE_FILES[0].format(backup["session"])
    if not usable:
        if bad:
            raise ValueError(
                f"sweep {experiment_dir.name}: {', '.join(bad)} cannot be read and there is no "
                f"usable backup of Tune's state ({experiment_dir / BACKUP}); the sweep cannot "
                "resume"
            )
        return []
    session = backup["session"]
    if bad:
        log.warning(
            "%s unreadable (the driver was killed while Ray Tune copied its state to storage); "
            "restoring Tune's state from %s (session %s)",
            ", ".join(bad),
            BACKUP,
            session,
        )
    if TUNER_FILE in bad and TUNER_FILE not in backup["files"]:
        raise ValueError(
            f"sweep {experiment_dir.name}: {TUNER_FILE} cannot be read and the backup of Tune's "
            f"state ({experiment_dir / BACKUP}) has no copy of it; the sweep cannot resume"
        )
    for name, data in backup["files"].items():  # first: a kill from here on finds them again
        write_atomic(experiment_dir / name, data)
    for template in TUNE_FILES:  # Tune reads the newest of each kind: drop any newer than ours
        for path in experiment_dir.glob(template.format("*")):
            if path.name not in backup["files"] and (
                path.name > template.format(session) or not readable(path)
            ):
                path.unlink()
    return bad
