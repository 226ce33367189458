"""What deterministic kernels cost: the search's train step with ``execution.deterministic``
on and off.

``tf.config.experimental.enable_op_determinism()`` cannot be turned off inside a
process, so each measurement is its own process (``--worker``): it builds the
supernet of a search config exactly as ``spnas-search`` does (:mod:`spnas.train.recipe`,
real data), runs a few steps to build the train function, then times ``--steps``
steps. The processes alternate on, off, on, off, ... (``--rounds`` pairs) so that the
machine's drift and other processes' load fall on both alike; the result is the
ratio of the medians.

    python bench/determinism_cost.py --rounds=3 --steps=40 --json=out.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def worker(config_name: str, deterministic: bool, steps: int, warmup: int) -> dict:
    from spnas.configs_path import load_config
    from spnas.search.run import load_search_table, space_from_config
    from spnas.search.supernet import build_supernet
    from spnas.train import recipe

    config = load_config(config_name)
    config.execution.deterministic = deterministic
    strategy = recipe.start(config, seed_first=True)
    info, num_classes = recipe.train_info(config)
    space = space_from_config(config, num_classes)
    table = load_search_table(config, space)
    lengths = recipe.schedule_lengths(config.schedule, info.num_examples, whole_batches=True)
    data = recipe.build_datasets(config, space.input_size)
    with strategy.scope():
        model = build_supernet(space, table, weight_decay=config.schedule.weight_decay)
        recipe.compile_model(model, config, recipe.learning_rate(config.schedule, lengths),
                             recipe.metrics(config.schedule, ce=True))
    stream = data.train_from(0)
    model.fit(stream, epochs=1, steps_per_epoch=warmup, verbose=0)  # builds the train step
    t0 = time.perf_counter()
    model.fit(stream, epochs=1, steps_per_epoch=steps, verbose=0)
    return {"deterministic": deterministic, "step_ms": 1e3 * (time.perf_counter() - t0) / steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="default.py", help="a shipped search config")
    p.add_argument("--rounds", type=int, default=3, help="on/off pairs")
    p.add_argument("--steps", type=int, default=40, help="timed steps per process")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--json", default="", help="write the result here too")
    p.add_argument("--worker", choices=("on", "off"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a.config, a.worker == "on", a.steps, a.warmup)))
        return
    times: dict[str, list[float]] = {"on": [], "off": []}
    for r in range(a.rounds):
        for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
            out = subprocess.run(
                [sys.executable, __file__, f"--worker={mode}", f"--config={a.config}",
                 f"--steps={a.steps}", f"--warmup={a.warmup}"],
                capture_output=True, text=True, check=True)
            ms = json.loads(out.stdout.strip().splitlines()[-1])["step_ms"]
            times[mode].append(ms)
            print(f"round {r}: deterministic {mode:>3}: {ms:7.1f} ms/step", flush=True)
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    result = {
        "bench": "determinism_cost", "config": a.config, "steps": a.steps, "rounds": a.rounds,
        "step_ms_on": times["on"], "step_ms_off": times["off"],
        "median_on_ms": on, "median_off_ms": off, "ratio_on_off": on / off,
        "host": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": datetime.date.today().isoformat(),
    }
    print(f"median ms/step: deterministic on {on:.1f}, off {off:.1f}; on/off = {on / off:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
