"""``spnas-search``: train the supernet, decode the architecture, write arch.json.

Schedule (reference-facts.md, "Search"), scaled by epochs so small runs keep
its shape: the training recipe the trainer uses too (:mod:`spnas.train.recipe`:
RMSProp 0.9/0.9/1e-3, LR 0.016 per 256 images decayed x0.97 every 2.4 epochs,
weight EMA 0.9999, label smoothing 0.1, weight decay 1e-5 on non-BN variables,
EMA evaluation after BN recalibration), plus what only the search does: lambda = 0
and indicator keep-probability 0.6 for the warm-up epochs (5 of 8,
``lambda_warmup_epochs``), then lambda and no indicator dropout; decoding and arch.json.
"""

from __future__ import annotations

import os

import keras
import ml_collections

from spnas.arch.costs import cost_records, cost_table
from spnas.arch.handoff import Arch, load_arch, make_arch, write_arch
from spnas.arch.memory import ActivationTable
from spnas.arch.params import ParamsTable
from spnas.config_check import check as check_config
from spnas.fileio import atomic_write_json, check_writable_dir, sha256_file
from spnas.search import budgets, report
from spnas.search.callbacks import SearchLogger, SearchSchedule, kernel_channel_std
from spnas.search.limits import (
    ParamsLimitController,
    check_limits,
    constraints_record,
    decode_under_limit,
    limit_lines,
)
from spnas.search.supernet import build_supernet
from spnas.search.target import (
    LambdaController,
    SearchConfigError,
    budget_verdict,
    closest_decisions,
    decode_at_budget,
    with_margins,
)
from spnas.space import SearchSpace
from spnas.tables.cost import CostTable
from spnas.tables.runtime_model import BoundTable, bind
from spnas.tables.shipped import resolve as resolve_table_path
from spnas.tables.table import load_table
from spnas.train import recipe
from spnas.train.distribute import is_chief
from spnas.train.runner import TqdmProgress, checkpoint_step
from spnas.workdir import RUN_FILE, RunRecordError, StageRun, begin_stage, locked

__all__ = ["SearchConfigError", "run", "space_from_config", "load_search_table", "summary_lines"]

BUDGET_METHOD = ("global shift of the indicators' relative margins (norm - t) / norm "
                 "(spnas/search/target.py, decode_at_budget)")


def space_from_config(config: ml_collections.ConfigDict, num_classes: int) -> SearchSpace:
    """The search space of ``config.space`` at ``data.image_size`` with ``num_classes``."""
    fields = dict(config.space.to_dict())
    fields["input_size"] = int(config.data.image_size)
    fields["num_classes"] = num_classes
    return SearchSpace.from_dict(fields)


def load_search_table(config: ml_collections.ConfigDict, space: SearchSpace) -> BoundTable | None:
    """``config.latency_table`` (a path or a shipped name), bound to ``space`` once; None
    when it is ``""`` (a search on MACs or parameters without latency)."""
    if not config.latency_table:
        if config.cost == "latency":
            raise SearchConfigError("latency_table is '' but cost is 'latency': name a "
                                    "latency table, or set cost=macs or cost=params.")
        return None
    table = load_table(resolve_table_path(config.latency_table))
    return bind(table, space, strict=not config.get("table_proxy", False))


def search_cost(config: ml_collections.ConfigDict, space: SearchSpace,
                latency: BoundTable | None) -> CostTable:
    """The cost table the search minimises and targets (``config.cost``)."""
    return latency if config.cost == "latency" else cost_table(config.cost, space)


def _target_ms(config: ml_collections.ConfigDict, table: CostTable) -> float | None:
    """The budget in the cost table's unit (None when off): ``target_ms`` for latency
    (``target`` is its other name), ``target`` for MACs and parameters; checked against
    the reachable range."""
    target_ms, target = config.target_ms or None, config.target or None
    if table.kind == "latency":
        if target_ms is not None and target is not None and target_ms != target:
            raise SearchConfigError(
                f"target_ms={target_ms:g} and target={target:g} disagree: with cost=latency "
                "target is target_ms by another name; set one.")
        target = target_ms or target
    elif target_ms is not None:
        raise SearchConfigError(
            f"target_ms={target_ms:g} is a latency target (ms) but cost is {table.kind!r}: set "
            f"target_ms=0 and give the budget as target (in {table.unit}).")
    lo, hi = table.range()
    if target is not None and not lo <= target <= hi:
        raise SearchConfigError(
            f"target={target:g} {table.unit} is outside the reachable range of this space on "
            f"{table.label}: {table.fmt(lo)}-{table.fmt(hi)} {table.unit}.")
    return target


def summary_lines(space: SearchSpace, choices: list[str], table: CostTable | None) -> list[str]:
    unit = table.unit if table is not None else "ms"
    lines = [f"{'layer':>5} {'in':>4} {'out':>4} {'s':>2} {'hw':>4}  {'choice':<7} {unit:>8}"]
    for spec, choice in zip(space.layers(), choices):
        ms = ""
        if table is not None and spec.searchable:
            ms = f"{table.layer_cost(spec.index, choice):8.4g}"
        elif not spec.searchable:
            ms = f"{'fixed':>8}"
        lines.append(
            f"{spec.index:>5} {spec.in_ch:>4} {spec.out_ch:>4} {spec.stride:>2} {spec.input_hw:>4}  "
            f"{choice:<7} {ms}"
        )
    return lines


def _checked_limit(config, space: SearchSpace, table: CostTable, target_ms: float | None,
                   targets: tuple[float, ...]) -> tuple[int, int] | None:
    """The space's parameter range when ``config.max_params`` is set (None when 0), after
    checking the limit against it, the latency target and every budget of
    ``config.targets`` (before any data or model)."""
    max_params = config.get("max_params", 0)
    if not max_params:
        return None
    if table.kind == "params":
        raise SearchConfigError("max_params with cost=params: the search's target is already "
                                "a parameter count; set one of them.")
    for t in targets:
        check_limits(space, table, max_params, t, config.target_tolerance, what="targets")
    return check_limits(space, table, max_params, target_ms, config.target_tolerance).range()


def _params_controller(config, model, params_range: tuple[int, int] | None
                       ) -> ParamsLimitController | None:
    """``config.max_params``'s controller (None without a limit); turns the supernet's
    parameter loss on."""
    if params_range is None:
        return None
    max_params = config.max_params
    lo, hi = params_range
    model.enable_params_loss()
    if is_chief():
        print(f"spnas-search: parameter limit {max_params:,} (this space: {lo:,}-{hi:,} "
              f"parameters" + ("; the limit cannot bind" if max_params >= hi else "") + ")",
              flush=True)
    return ParamsLimitController(max_params, config.params_lr, config.params_max_lambda,
                                 kp=config.params_kp)


def _callbacks(config, model, lr, lengths: recipe.Lengths, warmup_steps: int,
               target_ms: float | None, params_range: tuple[int, int] | None,
               workdir: str) -> tuple[list, list]:
    """The lambda / indicator schedule, the log and the progress bar (and what to close)."""
    controller = None
    if target_ms is not None:
        controller = LambdaController(target_ms, config.target_lr, config.lambda_,
                                      config.target_max_lambda, kp=config.target_kp)
    params_controller = _params_controller(config, model, params_range)
    schedule = SearchSchedule(model, warmup_steps, config.lambda_, config.indicator_keep_prob,
                              controller=controller, params_controller=params_controller)
    logger = SearchLogger(model, os.path.join(workdir, "search_log.csv"),
                          config.execution.log_every, lengths.per_epoch, lr,
                          tb_dir=os.path.join(workdir, "tb"))

    unit = (model.latency or {}).get("unit", "ms")

    def extra():
        out = {f"R_{unit}": f"{float(model.runtime_ms()):.4g}"}
        if params_controller is not None:
            out["P"] = f"{float(model.params_count()):,.0f}"
        return out

    progress = TqdmProgress(lengths.total, extra=extra)
    return [schedule, logger, progress], [progress, logger]


def _decode(config, model, space: SearchSpace, table: CostTable,
            target_ms: float | None) -> tuple[list[str], dict | None]:
    """The decoded choices (moved to the budget in latency-target mode, then under
    ``max_params``) and the budget; with a parameter limit the budget holds its
    decode under ``"params_limit"``."""
    choices = model.choices()
    budget = None
    if target_ms is not None and config.get("target_decode", True):
        budget = decode_at_budget(model.decisions(), choices, space, table, target_ms,
                                  config.target_tolerance, strict_table=not config.table_proxy)
        choices = budget["choices"]
    max_params = config.get("max_params", 0)
    if not max_params:
        return choices, budget
    limit = decode_under_limit(model.decisions(), choices, space, table,
                               ParamsTable.from_space(space), max_params, target_ms,
                               config.target_tolerance)
    return limit["choices"], {**(budget or {}), "params_limit": limit}


def run(config: ml_collections.ConfigDict, workdir: str) -> Arch:
    """Runs a search; returns the arch.json it wrote, as the :class:`Arch` the trainer takes.

    The work directory is locked for the run (:func:`spnas.workdir.locked`) and the
    run is checked against its record (``run.json``, :func:`spnas.workdir.begin_stage`):
    a rerun continues the same search, returns the arch.json of a finished one
    without rewriting it, or is refused when the config differs.

    Raises:
      SearchConfigError, DatasetError, LatencyTableError, PermissionError,
      TrainingDivergedError, CheckpointError, WorkdirBusy, RunRecordError:
        each with a message naming the problem.
      Interrupted: SIGINT/SIGTERM during training (a checkpoint was saved).
    """
    check_config(config, "search", error=SearchConfigError)  # as the CLI does, for API callers
    workdir = check_writable_dir(workdir)
    strategy = recipe.start(config, seed_first=True)
    chief = is_chief()  # the other hosts of a cluster share the chief's directory and lock
    with locked(workdir, take=chief):
        ckpt_dir = os.path.join(workdir, "checkpoints")
        stage = begin_stage(workdir, "search", config.to_dict(), write=chief,
                            progress=checkpoint_step(ckpt_dir), prog="spnas-search")
        if stage.finished:
            return _recorded(workdir, stage)
        arch = _search(config, workdir, strategy)
        if arch.path:
            stage.finish({"file": "arch.json", "sha256": arch.sha256,
                          "steps": arch["search"]["steps"]})
        return arch


def _recorded(workdir: str, stage: StageRun) -> Arch:
    """The arch.json of a finished search (nothing is rewritten)."""
    path = os.path.join(workdir, "arch.json")
    if not os.path.isfile(path):
        raise RunRecordError(
            f"The search in {workdir} finished ({os.path.join(workdir, RUN_FILE)}) but its "
            f"{path} is gone; restore it, or use a new --workdir to search again.")
    if stage.write:
        print(f"spnas-search: the search in {workdir} is already finished with this config "
              f"(recorded in {RUN_FILE}); nothing is rewritten. arch.json: {path}", flush=True)
    return load_arch(path)


def _search(config: ml_collections.ConfigDict, workdir: str, strategy) -> Arch:
    """The search itself, in a locked and recorded work directory."""
    info, num_classes = recipe.train_info(config)
    space = space_from_config(config, num_classes)
    latency = load_search_table(config, space)
    table = search_cost(config, space, latency)  # what the search minimises and targets
    target_ms = _target_ms(config, table)
    targets = budgets.checked_targets(config, table)  # config.targets, before training
    params_range = _checked_limit(config, space, table, target_ms, targets)  # max_params
    s = config.schedule
    lengths = recipe.schedule_lengths(s, info.num_examples, whole_batches=True)
    warmup_steps = lengths.steps(config.lambda_warmup_epochs)
    recipe.check_batches(s, strategy.num_replicas_in_sync)
    data = recipe.build_datasets(config, space.input_size)
    lr = recipe.learning_rate(s, lengths)
    with strategy.scope():
        model = build_supernet(space, table, weight_decay=s.weight_decay,
                               strict_table=not config.table_proxy,
                               superkernel_init=config.get("superkernel_init", "fan_in"))
        recipe.compile_model(model, config, lr, recipe.metrics(s, ce=True))
    callbacks, closing = _callbacks(config, model, lr, lengths, warmup_steps, target_ms,
                                    params_range, workdir)
    lo, hi = table.range()
    print(f"spnas-search: space: {space.describe()}")
    print(f"spnas-search: {config.data.dataset} ({data.info.num_examples} train images"
          + (f", {data.info.skipped} corrupt skipped" if data.info.skipped else "")
          + f", {num_classes} classes), {space.input_size}x{space.input_size}, "
          f"batch {s.batch_size} on {strategy.num_replicas_in_sync} replica(s); {lengths.total} steps "
          f"({int(lengths.per_epoch)}/epoch), warm-up {warmup_steps}; cost {table.kind} on "
          f"{table.label} ({table.fmt(lo)}-{table.fmt(hi)} {table.unit} reachable); "
          + (f"target {target_ms:g} {table.unit}" if target_ms else f"lambda {config.lambda_:g}"))
    ckpt_dir = os.path.join(workdir, "checkpoints")
    resumed_from = checkpoint_step(ckpt_dir)
    _, seconds = recipe.fit(model, data, lengths.total, ckpt_dir,
                            config, callbacks, closing)
    choices, budget = _decode(config, model, space, table, target_ms)
    # Indicator dropout during the warm-up leaves BN moving statistics that a
    # short search never washes out (0.99 momentum); recompute them for the
    # evaluated weights (see spnas/train/precise_bn.py).
    with recipe.ema_evaluation(model, data, int(s.bn_recalibration_batches)) as ev:
        val = ev.result
    arch = make_arch(
        space, choices, latency, strict_table=not config.table_proxy,
        **({"target_ms": target_ms} if table.kind == "latency" else {}),
        costs=cost_records(space, choices, latency),
        search={
            "dataset": config.data.dataset,
            "steps": lengths.total,
            "epochs": s.epochs,
            "warmup_steps": warmup_steps,
            "lambda": float(keras.ops.convert_to_numpy(model.runtime_lambda)),
            "supernet_val_accuracy_ema": float(val["accuracy"]),
            "supernet_val_images": data.eval_info.num_examples,
            "train_images": data.info.num_examples,
            "skipped_corrupt": {"train": data.info.skipped, "validation": data.eval_info.skipped},
            "seconds": round(seconds, 1),
            "replicas": strategy.num_replicas_in_sync,
        },
        reproducibility=recipe.reproducibility(config, strategy, resumed_from),
        decisions=with_margins(model.decisions()),
        config=config.to_dict(),
    )
    predicted = table.predict(choices)
    if target_ms is not None:
        arch["target"] = budget_verdict(predicted, target_ms, config.target_tolerance, table.unit)
        if budget is not None and "choices" in budget:
            arch["target"]["decode"] = {
                "method": BUDGET_METHOD,
                **{k: v for k, v in budget.items() if k not in ("choices", "params_limit")}}
    arch["constraints"] = constraints_record(
        predicted, ParamsTable.from_space(space).count(choices), target_ms,
        config.target_tolerance, config.max_params or None,
        arch["search"]["lambda"], float(keras.ops.convert_to_numpy(model.params_lambda)),
        (budget or {}).get("params_limit"), ActivationTable.from_space(space).record(choices),
        kind=table.kind, unit=table.unit)
    # config.targets: more nets from this supernet (every host evaluates; the chief writes).
    many = budgets.many_budgets(config, model, data, space, table, arch, targets, BUDGET_METHOD,
                                latency=latency)
    path = os.path.join(workdir, "arch.json")
    if not is_chief():  # the other hosts of a cluster write nothing
        return Arch(arch)
    write_arch(path, arch)
    atomic_write_json(os.path.join(workdir, "kernel_std.json"), kernel_channel_std(model))
    _print_result(workdir, space, choices, table, latency, arch, budget, val, seconds)
    if many is not None:
        written = budgets.write_budgets(workdir, many)
        print("budgets (one supernet, decoded at each; top1: its supernet accuracy, "
              "indicators forced):\n" + "\n".join(budgets.summary_lines(many["table"])))
        print("\n".join(f"budget file: {p}" for p in written))
    return Arch(arch, path=os.path.abspath(path), sha256=sha256_file(path))


def _print_result(workdir: str, space: SearchSpace, choices: list[str], table: CostTable,
                  latency: BoundTable | None, arch: dict, budget: dict | None, val: dict,
                  seconds: float) -> None:
    figures = report.make_figures(workdir)
    print("\n".join(summary_lines(space, choices, table)))
    if latency is not None:
        print(f"predicted latency: {arch['predicted_ms']:.3f} ms on {latency.device!r} "
              f"(exact table sum {arch['predicted_ms_exact']:.3f} ms)")
    print("costs: " + ", ".join(f"{k} {r['value']:,.6g} {r['unit']}"
                                for k, r in arch["costs"].items()))
    if "target" in arch:
        if budget is not None and budget.get("changed_layers"):
            print(f"budget decode: margin shift {budget['shift']:+.3f} changed layers "
                  f"{', '.join(map(str, budget['changed_layers']))} (the plain decode predicts "
                  f"{budget['unshifted_predicted']:.4g} {table.unit})")
        print(arch["target"]["message"])
    print("\n".join(limit_lines(arch["constraints"], table.label)))
    close = closest_decisions(arch["decisions"])
    if close:
        print("closest decisions (relative margin (norm - t) / norm; near 0 = a hair from "
              "flipping): " + ", ".join(f"layer {c['layer']} {c['indicator']} {c['margin']:+.2%}"
                                         for c in close))
    print(f"supernet validation accuracy (EMA weights): {val['accuracy']:.4f}; "
          f"search took {seconds:.0f} s")
    print(f"arch.json: {os.path.join(workdir, 'arch.json')}")
    for f in figures:
        print(f"figure: {f}")
