"""Train-step build time of the search on a CPU: the code before and after the cut.

A search's first ``model.fit`` step traces the TensorFlow train step (forward pass,
gradients, optimizer update, EMA, metrics) and optimises the graph; on 2 CPU cores
that took 45-80 s of the embedded default's 4-minute search (Single-Path NAS,
Stamoulis et al., 2019: the search is one supernet trained with CE + lambda ln R).
This script measures, for the code at ``--before`` (a git revision, extracted with
``git archive`` into a temporary folder) and for this checkout:

* the build time: wall and process-CPU seconds from ``fit`` to the end of its first
  step (each worker is a fresh process, so the graph is built from scratch),
* the steady step time: after ``--warmup`` more steps, both workers of a round stay
  alive and time ``--chunks`` chunks of ``--steps`` steps each, taking turns, so that
  the machine's drift falls on both alike (median over all steps, and the median of
  the before/after ratios of paired chunks),
* how many times the train step was traced, and the graph ops of the executed trace
  by source (forward, backward, loss, optimizer update, EMA, metrics; forward and
  backward split into superkernel, batch norm and other layers),
* with ``--check_steps`` > 0, the numbers: both codes train ``--check_steps`` steps
  with the optimizer built before the first step (the old code's documented start,
  RMSProp accumulator 1 and EMA from the weights, which the old search lost by
  building the optimizer inside the first trace), indicator dropout (keep 0.6) and
  the runtime loss (lambda 0.02) on, from the same weights and batches; then the
  losses, weights and optimizer state are compared.

The supernet and its compile come from each tree's own ``spnas`` exactly as in
``spnas-search`` (``recipe.start``, ``build_supernet``, ``recipe.compile_model``);
the batches are synthetic (seeded, the real pipeline's shapes: batch 64, 32x32x3,
one-hot labels) so that both trees see the same data and the input pipeline is not
timed. Each round builds one worker of each code, one after the other (a build never
shares the CPU with the other worker's), in ABBA order over the rounds.

    python bench/build_time.py --rounds=3 --json=bench/results/build_time_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
BEFORE_REV = "e85e5c0"  # the last commit before the build-time cut
CHECK_KEEP_PROB = 0.6  # the search's indicator keep-probability during its warm-up
CHECK_LAMBDA = 0.02  # the release's lambda

# -- worker: one fresh process per measurement --------------------------------------------


def _build(config_name: str):
    """The supernet of a search config, compiled as spnas-search compiles it."""
    from spnas.configs_path import load_config
    from spnas.search.run import load_search_table, space_from_config
    from spnas.search.supernet import build_supernet
    from spnas.train import recipe

    config = load_config(config_name)
    s = config.schedule
    strategy = recipe.start(config, seed_first=True)
    info, num_classes = recipe.train_info(config)
    space = space_from_config(config, num_classes)
    table = load_search_table(config, space)
    lengths = recipe.schedule_lengths(s, info.num_examples, whole_batches=True)
    with strategy.scope():
        model = build_supernet(space, table, weight_decay=s.weight_decay,
                               strict_table=not config.table_proxy,
                               superkernel_init=config.get("superkernel_init", "fan_in"))
        recipe.compile_model(model, config, recipe.learning_rate(s, lengths),
                             recipe.metrics(s, ce=True))
    return model, config, space, num_classes


def _batches(batch: int, size: int, num_classes: int, count: int = 8):
    """``count`` seeded synthetic batches, repeated: the real pipeline's element spec."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(count * batch, size, size, 3)).astype("float32")
    y = np.eye(num_classes, dtype="float32")[rng.integers(0, num_classes, count * batch)]
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat()


class _Phases:
    """Op counts of the graph being traced at the train step's phase boundaries.

    Wraps (on the instances, for this process only) the methods Keras' TensorFlow
    train step calls in order: ``_compute_loss``, ``GradientTape.gradient``,
    ``optimizer.apply`` with its ``_backend_update_step`` (the per-variable update),
    and ``compute_metrics``. The EMA runs between the end of ``_backend_update_step``
    and the end of ``apply``.
    """

    def __init__(self, model):
        import tensorflow as tf

        self.marks: dict[int, dict[str, int]] = {}  # id(graph) -> {mark: op count}
        self.graphs: dict[int, object] = {}
        self.last = None  # id of the last traced graph

        def mark(graph, name):
            if graph is None or not hasattr(graph, "get_operations"):
                return
            self.graphs[id(graph)] = graph
            self.marks.setdefault(id(graph), {})[name] = len(graph.get_operations())
            self.last = id(graph)

        def wrap(owner, attr, name, graph_of):
            inner = getattr(owner, attr)

            def wrapped(*args, **kwargs):
                graph = graph_of(args, kwargs)
                mark(graph, f"{name}_start")
                out = inner(*args, **kwargs)
                mark(graph, f"{name}_end")
                return out

            setattr(owner, attr, wrapped)

        def graph_of_y_pred(args, kwargs):
            return getattr(kwargs.get("y_pred", args[2] if len(args) > 2 else None), "graph", None)

        def graph_of_grads(args, kwargs):
            grads = [g for g in args[0] if g is not None]
            return getattr(grads[0], "graph", None) if grads else None

        wrap(model, "_compute_loss", "loss", graph_of_y_pred)
        wrap(model, "compute_metrics", "metrics", graph_of_y_pred)
        wrap(model.optimizer, "apply", "apply", graph_of_grads)
        wrap(model.optimizer, "_backend_update_step", "update", graph_of_grads)
        wrap(tf.GradientTape, "gradient", "gradient",
             lambda args, kwargs: getattr(args[1], "graph", None))

    def by_source(self, searchable: set[str]) -> dict[str, int]:
        """Ops of the last traced train step, by source."""
        graph, m = self.graphs[self.last], self.marks[self.last]
        ops = graph.get_operations()
        counts: dict[str, int] = {}

        def add(source):
            counts[source] = counts.get(source, 0) + 1

        for i, op in enumerate(ops):
            name = op.name
            if i < m["loss_start"]:
                source = _forward_source(name, searchable)
            elif i < m["loss_end"]:
                source = ("loss: cross-entropy" if re.match(r"(compile_loss|softmax_cross)", name)
                          else "loss: weight decay + loss sum")
            elif i < m["gradient_start"]:
                source = "loss: tracker"
            elif i < m["gradient_end"]:
                source = _backward_source(name, op.type, searchable)
            elif i < m["update_start"]:
                source = "optimizer: learning rate, other"
            elif i < m["update_end"]:
                source = "optimizer: RMSProp update"
            elif i < m["apply_end"]:
                source = "optimizer: EMA (weights + BN statistics), step count"
            elif i < m["metrics_end"]:
                source = "metrics"
            else:
                source = "outputs"
            add(source)
        counts["total"] = len(ops)
        return counts


def _forward_source(name: str, searchable: set[str]) -> str:
    parts = name.split("/")
    if not re.match(r"supernet(_\d+)?$", parts[0]) or len(parts) < 2:
        return "forward: inputs"
    layer = re.sub(r"_\d+$", "", parts[1])
    sub = re.sub(r"_\d+$", "", parts[2]) if len(parts) > 2 else ""
    if len(parts) == 2:
        return "forward: runtime loss"
    if layer in searchable and sub == "conv_dw":
        return "forward: superkernel (indicators, dropout draws, runtime, conv)"
    if sub.startswith("bn"):
        return "forward: batch norm"
    return "forward: other layers"


def _backward_source(name: str, op_type: str, searchable: set[str]) -> str:
    # Gradient ops sit in "gradient_tape/" + the name scope of the op they differentiate.
    if not name.startswith("gradient_tape/"):
        return "backward: gradient sums (AddN)" if op_type == "AddN" else "backward: other"
    body = name[len("gradient_tape/"):]
    if re.match(r"(compile_loss|softmax_cross)", body):
        return "backward: loss, cross-entropy"
    if re.match(r"supernet(_\d+)?/", body):
        return _forward_source(body, searchable).replace("forward:", "backward:")
    return "backward: loss, weight decay + loss sum"


def worker_serve(config_name: str, warmup: int) -> None:
    """Builds the train step (timed), then times steps on request.

    Prints one JSON line after the first ``1 + warmup`` steps (the build), then
    one per ``steps N`` line read from stdin, until ``quit``.
    """
    import keras

    import spnas

    model, config, space, num_classes = _build(config_name)
    phases = _Phases(model)
    data = _batches(config.schedule.batch_size, space.input_size, num_classes)
    times: list[tuple[float, float]] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append((time.perf_counter(), time.process_time()))

    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(data, epochs=1, steps_per_epoch=1 + warmup, callbacks=[Clock()], verbose=0)
    cells = {getattr(c.cell_contents, "__name__", ""): c.cell_contents
             for c in model.train_function.__closure__ or ()}
    step_fn = getattr(cells.get("one_step_on_data"), "__wrapped__", None)
    print(json.dumps({
        "spnas": os.path.dirname(spnas.__file__),
        "build_wall_s": times[0][0] - t0,
        "build_cpu_s": times[0][1] - c0,
        "traces": step_fn.experimental_get_tracing_count() if step_fn is not None else None,
        "jit_compile": bool(model.jit_compile),
        "ops": phases.by_source({b.name for b in model.searchable_blocks}),
    }), flush=True)
    for line in sys.stdin:
        if not line.startswith("steps "):
            break
        times.clear()
        # One more step than asked: the first one's start is the fit call's overhead.
        model.fit(data, epochs=1, steps_per_epoch=int(line.split()[1]) + 1, callbacks=[Clock()],
                  verbose=0)
        print(json.dumps({"step_s": [b - a for (a, _), (b, _) in zip(times, times[1:])]}),
              flush=True)


def worker_check(config_name: str, steps: int, out: str) -> dict:
    import numpy as np
    from keras import ops

    model, config, space, num_classes = _build(config_name)
    model.optimizer.build(model.trainable_variables)  # the documented start, in both codes
    model.set_indicator_keep_prob(CHECK_KEEP_PROB)
    model.set_runtime_lambda(CHECK_LAMBDA)
    data = _batches(config.schedule.batch_size, space.input_size, num_classes)
    history = model.fit(data, epochs=steps, steps_per_epoch=1, verbose=0)
    arrays = {f"w/{v.path}": ops.convert_to_numpy(v) for v in model.weights}
    arrays.update({f"opt/{v.path}": ops.convert_to_numpy(v) for v in model.optimizer.variables})
    np.savez(out, **arrays)
    return {"loss": [float(x) for x in history.history["loss"]],
            "ce": [float(x) for x in history.history["ce"]]}


# -- driver --------------------------------------------------------------------------------


def extract(rev: str, into: str) -> str:
    """``spnas`` and ``configs`` of ``rev`` under ``into`` (configs installed as
    ``spnas.configs``, as pyproject maps them); returns the folder for PYTHONPATH."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "spnas", "configs"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    shutil.copytree(os.path.join(into, "configs"), os.path.join(into, "spnas", "configs"),
                    dirs_exist_ok=True)
    return into


def run_worker(tree: str, args: list[str], timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                       env=env, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"worker {args} in {tree} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


class Worker:
    """A live ``--worker=serve`` process on a tree (one JSON line per answer)."""

    def __init__(self, tree: str, args: list[str]):
        env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
        self.proc = subprocess.Popen([sys.executable, __file__, *args], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.proc.wait()}")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def compare(before: str, after: str) -> dict:
    """Largest differences between two saved states (weights and optimizer variables),
    matched by variable path."""
    import numpy as np

    a, b = np.load(before), np.load(after)
    out = {}
    for group in ("w/", "opt/"):
        keys = sorted(k for k in set(a.files) & set(b.files)
                      if k.startswith(group) and a[k].dtype.kind == "f")
        diffs = [float(np.max(np.abs(a[k] - b[k]))) if a[k].size else 0.0 for k in keys]
        worst = max(range(len(keys)), key=lambda i: diffs[i])
        out[group.rstrip("/")] = {
            "arrays": len(keys),
            "identical": sum(bool(np.array_equal(a[k], b[k])) for k in keys),
            "max_abs_diff": diffs[worst], "at": keys[worst],
            "its_max_abs": float(np.max(np.abs(a[keys[worst]]))),
            "only_before": sorted(k for k in a.files if k.startswith(group) and k not in b.files),
            "only_after": sorted(k for k in b.files if k.startswith(group) and k not in a.files),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="default.py", help="a shipped search config")
    p.add_argument("--before", default=BEFORE_REV, help="git revision of the old code")
    p.add_argument("--rounds", type=int, default=3, help="before/after pairs (ABBA order)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    p.add_argument("--steps", type=int, default=10, help="steps per timed chunk")
    p.add_argument("--chunks", type=int, default=4, help="timed chunks per worker and round")
    p.add_argument("--check_steps", type=int, default=10, help="numerics check (0: skip)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds per check worker")
    p.add_argument("--json", default=str(REPO / "bench" / "results" / "build_time_cpu.json"))
    p.add_argument("--worker", choices=("serve", "check"), help=argparse.SUPPRESS)
    p.add_argument("--out", default="", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker == "serve":
        worker_serve(a.config, a.warmup)
        return
    if a.worker == "check":
        print(json.dumps(worker_check(a.config, a.check_steps, a.out)))
        return

    tmp = tempfile.mkdtemp(prefix="spnas_build_time_")
    try:
        before = os.path.join(tmp, "before")
        os.makedirs(before)
        trees = {"before": extract(a.before, before), "after": str(REPO)}
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        steps: dict[str, list[float]] = {"before": [], "after": []}
        serve = ["--worker=serve", f"--config={a.config}", f"--warmup={a.warmup}"]
        for r in range(a.rounds):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            live = {}
            try:
                for code in order:  # one build at a time: builds do not share the CPU
                    live[code] = Worker(trees[code], serve)
                    res = live[code].read()
                    runs[code].append(res)
                    print(f"round {r} {code:>6}: build {res['build_wall_s']:6.1f} s wall "
                          f"({res['build_cpu_s']:6.1f} s CPU), {res['traces']} trace(s), "
                          f"{res['ops']['total']} ops", flush=True)
                for c in range(a.chunks):  # both alive: their steps alternate
                    for code in order if c % 2 == 0 else order[::-1]:
                        got = live[code].ask(f"steps {a.steps}")["step_s"]
                        steps[code] += got
                        runs[code][-1].setdefault("chunk_step_ms", []).append(
                            1e3 * statistics.median(got))
                print(f"round {r}: step ms (chunk medians) " + "; ".join(
                    f"{code} " + " ".join(f"{x:.0f}" for x in runs[code][-1]["chunk_step_ms"])
                    for code in order), flush=True)
            finally:
                for w in live.values():
                    w.close()
        check = None
        if a.check_steps > 0:
            saved = {code: os.path.join(tmp, f"{code}.npz") for code in trees}
            losses = {code: run_worker(trees[code], ["--worker=check", f"--config={a.config}",
                                                     f"--check_steps={a.check_steps}",
                                                     f"--out={saved[code]}"], a.timeout)
                      for code in trees}
            rel = [abs(x - y) / abs(x) for x, y in zip(losses["before"]["loss"],
                                                      losses["after"]["loss"])]
            check = {"steps": a.check_steps, "keep_prob": CHECK_KEEP_PROB, "lambda": CHECK_LAMBDA,
                     "loss_before": losses["before"]["loss"], "loss_after": losses["after"]["loss"],
                     "ce_equal": losses["before"]["ce"] == losses["after"]["ce"],
                     "loss_max_rel_diff": max(rel), **compare(saved["before"], saved["after"])}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(code, key):
        return statistics.median(x[key] for x in runs[code])

    summary = {code: {"build_wall_s": med(code, "build_wall_s"),
                      "build_cpu_s": med(code, "build_cpu_s"),
                      "step_ms_median": 1e3 * statistics.median(steps[code]),
                      "step_ms_min": 1e3 * min(steps[code])}
               for code in runs}
    paired = [b / f for rb, ra in zip(runs["before"], runs["after"])
              for b, f in zip(rb["chunk_step_ms"], ra["chunk_step_ms"])]
    result = {
        "bench": "build_time", "config": a.config, "before": a.before,
        "date": datetime.date.today().isoformat(),
        "host": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "rounds": a.rounds, "warmup": a.warmup, "steps_per_chunk": a.steps, "chunks": a.chunks,
        "runs": runs, "median": summary,
        "ratio_build_wall_before_over_after":
            summary["before"]["build_wall_s"] / summary["after"]["build_wall_s"],
        "ratio_build_cpu_before_over_after":
            summary["before"]["build_cpu_s"] / summary["after"]["build_cpu_s"],
        "ratio_step_before_over_after":
            summary["before"]["step_ms_median"] / summary["after"]["step_ms_median"],
        "ratio_step_paired_chunks_median": statistics.median(paired),
        "ops_before": runs["before"][-1]["ops"], "ops_after": runs["after"][-1]["ops"],
        "check": check,
    }
    print(f"build (to the end of step 1): before {summary['before']['build_wall_s']:.1f} s, "
          f"after {summary['after']['build_wall_s']:.1f} s wall: "
          f"{result['ratio_build_wall_before_over_after']:.2f}x "
          f"(CPU {result['ratio_build_cpu_before_over_after']:.2f}x); steady step "
          f"{summary['before']['step_ms_median']:.1f} vs {summary['after']['step_ms_median']:.1f} ms, "
          f"before/after {result['ratio_step_before_over_after']:.3f} (paired chunks "
          f"{result['ratio_step_paired_chunks_median']:.3f})")
    print(f"{'ops by source':<58} {'before':>7} {'after':>7}")
    for key in sorted(set(result["ops_before"]) | set(result["ops_after"]),
                      key=lambda k: (k == "total", k)):
        print(f"{key:<58} {result['ops_before'].get(key, 0):>7} {result['ops_after'].get(key, 0):>7}")
    if check:
        print(f"numerics after {check['steps']} steps: loss max rel diff "
              f"{check['loss_max_rel_diff']:.2e}; weights {check['w']['identical']}/"
              f"{check['w']['arrays']} identical, max |diff| {check['w']['max_abs_diff']:.2e}; "
              f"optimizer {check['opt']['identical']}/{check['opt']['arrays']} identical, "
              f"max |diff| {check['opt']['max_abs_diff']:.2e} (only in before: "
              f"{len(check['opt']['only_before'])}, only in after: "
              f"{len(check['opt']['only_after'])})")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
