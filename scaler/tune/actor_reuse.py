"""Keep Ray Tune from killing trial actors that are starting, so a sweep reuses its actors.

A sweep runs with `reuse_actors=True`: a finished trial's actor (its worker process, with torch,
TorchRec and our modules imported, and the synthetic data generator of its config cached) is cached
and handed to the next trial. Ray Tune 2.60 also hands a cached actor to a trial that is *staged*,
one whose own actor has its resources and is still starting, and then kills that starting actor.
Our searcher runs behind a concurrency limit, so it proposes a trial only when one finishes; the
new trial then finds the cache empty and starts a new actor, which is killed in its turn when the
next trial finishes while it starts. Once a trial is staged when another finishes (the first wave
of actors starts two at a time and short trials finish before the last ones are up), this repeats
for the rest of the sweep: `bench_sweep_scale` saw 247 actors started for 300 trials (bare Tune
over a grid: 8), the machine 82 % busy against 45 %. Ray's maintainers call the number of actors
spawned with reuse "nondeterministic and unstable" (ray-project/ray#42951).

`keep_starting_actors` changes one rule while a sweep's `Tuner.fit` runs: a cached actor is not
handed to a trial whose own actor already holds its resources and is starting; it waits for the
next trial instead, and the starting actor is used when it is up. A trial whose actor still waits
for resources takes the cached one as before (that keeps a full cluster from waiting on an idle
cached actor). If Ray's internals differ from what this expects, nothing is changed.
"""

from __future__ import annotations

import contextlib
import logging

log = logging.getLogger(__name__)


def _starting(controller, trial) -> bool:
    """The trial's own actor has its resources and is starting (not yet started)."""
    actor = controller._trial_to_actor.get(trial)
    if actor is None or trial in controller._resetting_trials:
        return False
    live = controller._actor_manager._live_actors_to_ray_actors_resources
    return actor in live and actor not in controller._started_actors


@contextlib.contextmanager
def keep_starting_actors():
    """While open, Tune keeps a trial's starting actor instead of swapping a cached one in and
    killing it (see the module); Ray's own rule again on exit."""
    try:
        from ray.air.execution._internal.actor_manager import RayActorManager
        from ray.tune.execution.tune_controller import TuneController

        original = TuneController._maybe_reuse_cached_actor
        expected = ("_trial_to_actor", "_resetting_trials", "_started_actors", "_actor_manager")
        if (
            "_live_actors_to_ray_actors_resources" not in RayActorManager.__init__.__code__.co_names
            or not all(name in TuneController.__init__.__code__.co_names for name in expected)
        ):
            raise AttributeError("Ray Tune's controller is not the one this was written for")
    except (ImportError, AttributeError) as exc:
        log.info("actor reuse left as Ray Tune does it: %s", exc)
        yield
        return

    def reuse_cached_actor(self, trial) -> bool:
        if _starting(self, trial):  # the attributes it reads were checked above
            return False  # keep the cached actor for the next trial; this one's is nearly up
        return original(self, trial)

    TuneController._maybe_reuse_cached_actor = reuse_cached_actor
    try:
        yield
    finally:
        TuneController._maybe_reuse_cached_actor = original


@contextlib.contextmanager
def count_actors_started():
    """Counts the Ray actors (worker processes) Tune's actor manager creates while it is open,
    in `counter[0]`: for tests and `bench_sweep_scale`; a spy that changes nothing."""
    from ray.air.execution._internal.actor_manager import RayActorManager

    original, counter = RayActorManager._try_start_actors, [0]

    def spy(self, *args, **kwargs):
        n = original(self, *args, **kwargs)
        counter[0] += n
        return n

    RayActorManager._try_start_actors = spy
    try:
        yield counter
    finally:
        RayActorManager._try_start_actors = original
