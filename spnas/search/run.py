"""``spnas-search``: train the supernet, decode the architecture, write arch.json.

Schedule (reference-facts.md, "Search"), scaled by epochs so small runs keep
its shape: RMSProp 0.9/0.9/1e-3, LR 0.016 per 256 images decayed x0.97 every
2.4 epochs, weight EMA 0.9999, label smoothing 0.1, weight decay 1e-5 on
non-BN variables, lambda = 0 and indicator keep-probability 0.6 for the
warm-up epochs (5 of 8), then lambda and no indicator dropout.
"""

from __future__ import annotations

import os
import time

import keras
import ml_collections

from spnas.arch.handoff import make_arch, write_arch
from spnas.errors import UserError
from spnas.fileio import atomic_write_json, check_writable_dir
from spnas.search import report
from spnas.search.callbacks import SearchLogger, SearchSchedule, kernel_channel_std
from spnas.search.supernet import build_supernet
from spnas.space import SearchSpace
from spnas.tables.runtime_model import latency_range_ms, layer_runtime_paper
from spnas.tables.table import LatencyTable, load_table
from spnas.train.optim import MnasRMSprop, ema_weights
from spnas.train.precise_bn import recalibrate_batch_norm
from spnas.train.runner import TqdmProgress, run_fit, steps_for
from spnas.train.schedule import MnasNetSchedule


class SearchConfigError(UserError):
    """The search configuration cannot work (before anything is trained)."""


def resolve_table_path(value: str) -> str:
    """A table file path, or the name of a table shipped with spnas."""
    if not value:
        raise FileNotFoundError("No latency table given: set --config.latency_table=PATH.")
    if os.path.exists(value):
        return value
    from spnas.tables import shipped as tables

    return tables.path(value)  # FileNotFoundError names the shipped tables


def space_from_config(config: ml_collections.ConfigDict, num_classes: int) -> SearchSpace:
    fields = dict(config.space.to_dict())
    fields["num_classes"] = num_classes
    return SearchSpace.from_dict(fields)


def load_search_table(config, space: SearchSpace) -> LatencyTable:
    path = resolve_table_path(config.latency_table)
    table = load_table(path)
    table.validate_for(space, strict=not config.get("table_proxy", False))
    return table


def summary_lines(space: SearchSpace, choices: list[str], table: LatencyTable | None) -> list[str]:
    lines = [f"{'layer':>5} {'in':>4} {'out':>4} {'s':>2} {'hw':>4}  {'choice':<7} {'ms':>8}"]
    for spec, choice in zip(space.layers(), choices):
        ms = ""
        if table is not None and spec.searchable:
            ms = f"{layer_runtime_paper(table.entries(spec.index), choice):8.3f}"
        elif not spec.searchable:
            ms = f"{'fixed':>8}"
        lines.append(
            f"{spec.index:>5} {spec.in_ch:>4} {spec.out_ch:>4} {spec.stride:>2} {spec.input_hw:>4}  "
            f"{choice:<7} {ms}"
        )
    return lines


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs a search; returns the arch.json dictionary it wrote.

    Raises:
      SearchConfigError, DatasetError, LatencyTableError, PermissionError,
      TrainingDivergedError: each with a message naming the problem.
    """
    from spnas.data import build_dataset, dataset_info
    from spnas.train.distribute import get_strategy

    workdir = check_writable_dir(workdir)
    keras.utils.set_random_seed(int(config.seed))
    data_kw = dict(data_dir=config.get("data_dir") or None, manual_dir=config.get("manual_dir") or None,
                   validation_fraction=config.validation_fraction, seed=config.seed)
    info = dataset_info(config.dataset, "train", **data_kw)
    num_classes = config.num_classes if config.num_classes > 0 else info.num_classes
    space = space_from_config(config, num_classes)
    table = load_search_table(config, space)
    lo, hi = latency_range_ms(table, space)
    target_ms = config.get("target_ms") or None
    if target_ms is not None and not lo <= target_ms <= hi:
        raise SearchConfigError(
            f"target_ms={target_ms:g} is outside the reachable range of this space on "
            f"{table.device!r}: {lo:.3f}-{hi:.3f} ms."
        )

    strategy = get_strategy(config.strategy, config.get("tpu", ""), config.get("cpu_replicas", 1))
    batch = int(config.batch_size)
    steps_per_epoch = int(config.get("steps_per_epoch") or 0) or max(1, info.num_examples // batch)
    total_steps = steps_for(config.epochs, steps_per_epoch)
    warmup_steps = min(total_steps, steps_for(config.warmup_epochs, steps_per_epoch)) \
        if config.warmup_epochs > 0 else 0
    train_ds, _ = build_dataset(config.dataset, "train", batch, space.input_size, training=True,
                                on_corrupt=config.on_corrupt, augment=config.get("augment"),
                                **data_kw)
    val_ds, val_info = build_dataset(config.dataset, "validation", batch, space.input_size,
                                     training=False, on_corrupt=config.on_corrupt, **data_kw)

    lr = MnasNetSchedule(config.lr, steps_per_epoch, config.lr_decay_epochs, config.lr_decay_rate)
    with strategy.scope():
        model = build_supernet(space, table, weight_decay=config.weight_decay,
                               strict_table=not config.table_proxy)
        smoothing = config.label_smoothing
        model.compile(
            optimizer=MnasRMSprop(lr, ema_momentum=config.ema_decay, use_ema=config.ema_decay > 0),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing),
            metrics=[
                keras.metrics.CategoricalCrossentropy(name="ce", from_logits=True,
                                                      label_smoothing=smoothing),
                keras.metrics.CategoricalAccuracy(name="accuracy"),
            ],
            jit_compile=bool(config.jit_compile),
        )

    controller = None
    if target_ms is not None:
        from spnas.search.target import LambdaController

        controller = LambdaController(target_ms, config.target_lr, config.lambda_,
                                      config.target_max_lambda, kp=config.get("target_kp", 0.0))
    schedule = SearchSchedule(model, warmup_steps, config.lambda_, config.indicator_keep_prob,
                              controller=controller)
    logger = SearchLogger(model, os.path.join(workdir, "search_log.csv"), config.log_every,
                          steps_per_epoch, lr, tb_dir=os.path.join(workdir, "tb"))
    progress = TqdmProgress(total_steps, extra=lambda: {"R_ms": f"{float(model.runtime_ms()):.3f}"})
    callbacks = [schedule, logger, progress]

    print(f"spnas-search: {config.dataset} ({info.num_examples} train images, {num_classes} classes), "
          f"{space.input_size}x{space.input_size}, batch {batch} on {strategy.num_replicas_in_sync} "
          f"replica(s); {total_steps} steps ({steps_per_epoch}/epoch), warm-up {warmup_steps}; "
          f"table {table.device!r} ({lo:.3f}-{hi:.3f} ms reachable); "
          + (f"target {target_ms:g} ms" if target_ms else f"lambda {config.lambda_:g}"))
    t0 = time.time()
    try:
        run_fit(model, train_ds, total_steps, os.path.join(workdir, "checkpoints"),
                config.checkpoint_every, callbacks)
    finally:
        progress.close()
        logger.close()
    seconds = time.time() - t0

    choices = model.choices()
    budget = None
    if target_ms is not None and config.get("target_decode", True):
        from spnas.search.target import decode_at_budget

        budget = decode_at_budget(model.decisions(), choices, space, table, target_ms,
                                  config.target_tolerance, strict_table=not config.table_proxy)
        choices = budget["choices"]
    with ema_weights(model):
        # Indicator dropout during the warm-up leaves BN moving statistics that a
        # short search never washes out (0.99 momentum); recompute them for the
        # evaluated weights (see spnas/train/precise_bn.py).
        if config.precise_bn_batches > 0:
            recalibrate_batch_norm(model, train_ds, config.precise_bn_batches)
        val = model.evaluate(val_ds, verbose=0, return_dict=True)
    arch = make_arch(
        space,
        choices,
        table,
        strict_table=not config.table_proxy,
        target_ms=target_ms,
        search={
            "dataset": config.dataset,
            "steps": total_steps,
            "epochs": config.epochs,
            "warmup_steps": warmup_steps,
            "lambda": float(keras.ops.convert_to_numpy(model.runtime_lambda)),
            "supernet_val_accuracy_ema": float(val["accuracy"]),
            "supernet_val_images": val_info.num_examples,
            "seconds": round(seconds, 1),
            "replicas": strategy.num_replicas_in_sync,
        },
        decisions=model.decisions(),
        config=config.to_dict(),
    )
    if target_ms is not None:
        from spnas.search.target import budget_verdict

        arch["target"] = budget_verdict(arch["predicted_ms"], target_ms, config.target_tolerance)
        if budget is not None:
            arch["target"]["decode"] = {
                "method": "global shift of the indicators' relative margins (norm - t) / norm "
                          "(spnas/search/target.py, decode_at_budget)",
                **{k: v for k, v in budget.items() if k != "choices"},
            }
    write_arch(os.path.join(workdir, "arch.json"), arch)
    atomic_write_json(os.path.join(workdir, "kernel_std.json"), kernel_channel_std(model))
    figures = report.make_figures(workdir)

    print("\n".join(summary_lines(space, choices, table)))
    print(f"predicted latency: {arch['predicted_ms']:.3f} ms on {table.device!r} "
          f"(exact table sum {arch['predicted_ms_exact']:.3f} ms)")
    if target_ms is not None:
        if budget is not None and budget["changed_layers"]:
            print(f"budget decode: margin shift {budget['shift']:+.3f} changed layers "
                  f"{', '.join(map(str, budget['changed_layers']))} (the plain decode predicts "
                  f"{budget['unshifted_predicted_ms']:.3f} ms)")
        print(arch["target"]["message"])
    print(f"supernet validation accuracy (EMA weights): {val['accuracy']:.4f}; search took {seconds:.0f} s")
    print(f"arch.json: {os.path.join(workdir, 'arch.json')}")
    for f in figures:
        print(f"figure: {f}")
    return arch
