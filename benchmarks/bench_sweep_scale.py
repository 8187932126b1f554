"""Does the driver keep pace as a sweep grows? scaler beside bare Ray Tune, same trials.

Both run the same oracle trial function (`scaler.tune.trainable.run_trial`: the law's points,
no training) over the same grid of model sizes x sample budgets, at the same concurrency and
CPUs per trial, on one local Ray started once for both. Bare Tune is a plain `Tuner` over
`tune.grid_search`, with no callbacks of ours; scaler is `run_sweep` (searcher, stopper, the
MLflow callback with its refits, the state backup). For each, the completion time of every trial
is recorded and the benchmark prints seconds per 100 trials along the sweep, then:

- flatness: the last 100 trials' time / trials 100-200's (goal <= 1.3x);
- throughput: scaler's trials per second / bare Tune's (goal >= 1.0x);
- `scaler.trials` + `scaler.points` (what `scaler query` reads) and the report's analysis on the
  finished sweep, in seconds (goals: < 10 s and < 60 s at 1,000 trials).

Run:  .venv/bin/python benchmarks/bench_sweep_scale.py [--trials 100 1000] [--concurrency 8]
      [--delay S] [--repeats N]
(`make bench` adds 10,000.)  Order alternates per size so neither side always runs on a warm
machine; the machine is shared, so compare the ratios, not the seconds, with other runs.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import itertools

import ray
from ray import tune

from scaler.spec import parse_spec
from scaler.tune.actor_reuse import count_actors_started

GRID = {100: (10, 10), 1000: (40, 25), 10_000: (100, 100)}  # trials -> (sizes, budgets)


def spec_for(trials: int, concurrency: int, name: str, delay: float = 0.0):
    sizes, budgets = GRID.get(trials) or (math.isqrt(trials), math.isqrt(trials))
    return parse_spec(
        {
            "name": name,
            "backend": "oracle",
            "seed": 0,
            "oracle": {
                "law": {"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28},
                "delay_seconds": delay,  # per eval point: the trial's length
            },
            "trial": {"eval_points": 4},
            "axes": {
                "params": {"n_params": {"low": 1.0e5, "high": 1.0e9, "num": sizes}},
                "data": {"low": 1.0e5, "high": 1.0e9, "num": budgets},
            },
            "budget": {"trials": sizes * budgets},
            "policy": {"name": "grid"},
            "resources": {"cpus_per_trial": 0.25, "concurrency": concurrency},
            "tracking": {"experiment": name},
        },
        source="bench",
    )


class Clock(tune.Callback):
    """Wall time at each trial's completion (the only thing bare Tune gets from us)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.done: list[float] = []

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done.append(time.perf_counter() - self.t0)


def run_bare(spec, storage: Path) -> list[float]:
    from scaler.tune.trainable import run_trial

    sizes = sorted({c.config()["params"]["n_params"] for c in candidates(spec)})
    budgets = sorted({c.config()["samples"] for c in candidates(spec)})
    clock = Clock()
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, spec_json=spec.resolved()),
        {"cpu": spec.resources.cpus_per_trial},
    )
    tune.Tuner(
        trainable,
        param_space={
            "params": {"n_params": tune.grid_search(sizes)},
            "samples": tune.grid_search(budgets),
        },
        tune_config=tune.TuneConfig(
            max_concurrent_trials=spec.resources.concurrency, reuse_actors=True
        ),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=str(storage), callbacks=[clock], verbose=0
        ),
    ).fit()
    return clock.done


def candidates(spec):
    from scaler.sweep import make_searcher

    return make_searcher(spec).policy.candidates


def run_scaler(spec, storage: Path) -> tuple[list[float], str]:
    from scaler.sweep import run_sweep

    t0, done = time.perf_counter(), []
    result = run_sweep(
        spec,
        storage=storage,
        final_bootstrap=0,
        progress=lambda p: done.append(time.perf_counter() - t0),
    )
    assert result.trials == spec.budget.trials, (result.trials, spec.budget.trials)
    return done, result.tracking_uri


class CpuMeter:
    """CPU seconds of this (driver) process, all its threads, and of the whole machine
    (/proc/stat), between `start` and `stop`: where the cores went during one side's run."""

    def start(self) -> None:
        self.t0, self.p0, self.m0 = time.perf_counter(), time.process_time(), self._machine()

    def stop(self) -> tuple[float, float, float]:
        """(wall s, driver CPU s, machine busy fraction)."""
        wall = time.perf_counter() - self.t0
        busy = (self._machine() - self.m0) / (wall * (os.cpu_count() or 1))
        return wall, time.process_time() - self.p0, busy

    @staticmethod
    def _machine() -> float:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except OSError:
            return math.nan
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def per_hundred(done: list[float]) -> list[float]:
    marks = [0.0, *done[99::100]]
    return [b - a for a, b in itertools.pairwise(marks)]


def query_and_report(spec, uri: str, out: Path) -> tuple[float, float]:
    """Seconds for what `scaler query` reads, and for `scaler report` (its default bootstrap,
    the plots and the markdown; nothing logged back)."""
    import scaler
    from scaler.report import write_report

    t0 = time.perf_counter()
    trials = scaler.trials(spec.name, tracking_uri=uri)
    scaler.points(spec.name, tracking_uri=uri)
    t1 = time.perf_counter()
    assert len(trials) == spec.budget.trials
    write_report(spec.name, out, uri, log_to_mlflow=False)
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument(
        "--delay",
        type=float,
        default=0.3,
        help="seconds per eval point (4 per trial): 0.3 makes ~1.2 s trials, the shape of the "
        "issue's measurement; 0 measures the driver's overhead alone",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="pairs of runs per size, in alternating order (bare-scaler, scaler-bare, ...); the "
        "ratios printed are medians over the pairs: a busy spell on a shared machine moves one "
        "side of one pair, not the median",
    )
    args = ap.parse_args()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        # paid here, not by whichever side happens to run first: a fresh Ray's first trials wait
        # for its worker processes to start, and scaler's first sweep in a process imports what
        # bare Tune does not (MLflow's sqlite store, scipy: ~1.6 s, as bare pays `import ray.tune`
        # above; it was inside the timed region of scaler's first run, 0.98x in that pair)
        run_bare(spec_for(16, args.concurrency, "warm-up", args.delay), Path(tmp) / "warm-up")
        run_scaler(spec_for(16, args.concurrency, "warm-up-s", args.delay), Path(tmp) / "warm-s")
        for i, n in enumerate(args.trials):
            runs = []  # per pair: ({side: completion times}, {side: (wall, driver, busy)})
            uri = spec = None
            for rep in range(args.repeats):
                spec = spec_for(n, args.concurrency, f"scale-{n}-{rep}", args.delay)
                storage = Path(tmp) / f"{n}-{rep}"
                order = ["bare", "scaler"] if (i + rep) % 2 == 0 else ["scaler", "bare"]
                times, cpu = {}, {}
                for side in order:
                    meter = CpuMeter()
                    meter.start()
                    with count_actors_started() as actors:
                        if side == "bare":
                            times["bare"] = run_bare(spec, storage / "bare")
                        else:
                            times["scaler"], uri = run_scaler(spec, storage / "scaler")
                    cpu[side] = (*meter.stop(), actors[0])
                    print(
                        f"{n} trials, pair {rep + 1}, {side}: {times[side][-1]:.1f} s", flush=True
                    )
                runs.append((times, cpu))
            q, r = query_and_report(spec, uri, Path(tmp) / f"{n}-report")
            rows.append((n, runs, q, r))

    print(
        f"\nconcurrency {args.concurrency}, 0.25 CPU per trial, {os.cpu_count()} cores, "
        f"trials of 4 eval points {args.delay} s apart"
    )
    med = statistics.median
    for n, runs, q, r in rows:
        print(f"\n{n} trials: seconds per 100 trials, in completion order")
        flats, throughputs, medians = [], [], []
        for k, (times, cpu) in enumerate(runs, 1):
            for side in ("bare", "scaler"):
                print(f"  {side:7s}", " ".join(f"{s:6.1f}" for s in per_hundred(times[side])))
            sc, bare = per_hundred(times["scaler"]), per_hundred(times["bare"])
            flats.append(sc[-1] / sc[1] if len(sc) >= 3 else float("nan"))
            throughputs.append(times["bare"][-1] / times["scaler"][-1])
            medians.append(med(bare) / med(sc))
            print(
                f"  pair {k}: flatness (last 100 / trials 100-200) {flats[-1]:.2f}x; throughput "
                f"vs bare {throughputs[-1]:.3f}x; median s/100 bare {med(bare):.1f}, scaler "
                f"{med(sc):.1f} ({medians[-1]:.2f}x)"
            )
            for side in ("bare", "scaler"):
                wall, driver, busy, actors = cpu[side]
                print(
                    f"  {side:7s} driver CPU {100 * driver / n:.2f} s per 100 trials "
                    f"({driver / wall:.0%} of a core); machine busy {busy:.0%}; "
                    f"trial actors started {actors}"
                )
        print(
            f"  over {len(runs)} pair(s), medians: scaler last 100 / trials 100-200 = "
            f"{med(flats):.2f}x (goal <= 1.3x); throughput vs bare Tune = {med(throughputs):.3f}x "
            f"(goal >= 1.0x; per pair {', '.join(f'{t:.3f}' for t in throughputs)}); median-100 "
            f"ratio {med(medians):.2f}x"
        )
        print(f"  query (trials + points) {q:.1f} s (goal < 10 s); report analysis {r:.1f} s")


if __name__ == "__main__":
    main()
