"""``spnas-train``: train a searched (or named) ConvNet from scratch, MnasNet-style.

After the search, Single-Path NAS trains the decoded network from scratch for
350 epochs with the MnasNet recipe (Stamoulis et al., 2019, Sec. 4.1;
reference-facts.md "Training"): batch 1024, RMSProp (decay 0.9, momentum 0.9,
epsilon 1e-3), LR 0.016 per 256 images with a 5-epoch linear warm-up, then
x0.97 every 2.4 epochs (staircase, counted from step 0), weight EMA 0.9999,
label smoothing 0.1, weight decay 1e-5 (``wd/2 ||w||^2`` on non-BN weights),
dropout 0.2, float32. The EMA weights are the ones evaluated and exported.

Outputs in the work directory: ``train_report.json`` (top-1/top-5 of the EMA
weights on the evaluation split, steps, parameters, time, architecture),
``model.keras`` (the EMA weights in a plain Keras model of standard layers, for
``spnas-export``), ``train_log.csv``, TensorBoard logs under ``tb/`` and the
resumable checkpoint under ``checkpoints/``. All files are written atomically.

Everything that can be wrong with the input (architecture, its downsampling,
the work directory, the config's numbers) is checked before TensorFlow is
imported, so a bad command fails in about a second with one line.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from typing import Any

import ml_collections

from spnas.arch.plan import ModelPlan, plan_model
from spnas.errors import UserError
from spnas.fileio import atomic_write_json, check_writable_dir, sha256_file
from spnas.train.distribute import STRATEGIES

REPORT_FILE = "train_report.json"
MODEL_FILE = "model.keras"  # read by spnas-export
LOG_FILE = "train_log.csv"
ARCH_FILE = "arch.json"  # written by spnas-search into the same work directory
REPORT_FORMAT = "spnas.train_report/1"
# Apart from spnas-search's checkpoints/ and tb/ in the same work directory.
CHECKPOINT_DIR = "train_checkpoints"
TENSORBOARD_DIR = os.path.join("tb", "train")


class TrainConfigError(UserError):
    """The training configuration cannot work (checked before anything is built)."""


def parse_arch(value: str) -> str | list[str]:
    """A ``config.arch`` value as :func:`spnas.models.build_model` takes it.

    Stage strings (``ir_r2_k3_s2_e6_c24,...``, comma separated) become a list;
    anything else (a registry name or an arch.json path) stays a string.
    """
    value = value.strip()
    if value.startswith(("ir_", "ds_")):
        return [s.strip() for s in value.split(",") if s.strip()]
    return value


def resolve_arch(config: ml_collections.ConfigDict, workdir: str) -> tuple[str | list[str], str]:
    """Which architecture to train, and a description of where it came from.

    ``config.arch`` when set (``--arch`` sets it); else ``<workdir>/arch.json``
    when a search left one there; else ``config.fallback_arch``.
    """
    if config.arch:
        return parse_arch(config.arch), f"config.arch={config.arch}"
    searched = os.path.join(workdir, ARCH_FILE)
    if os.path.isfile(searched):
        return searched, f"searched ({searched})"
    if not config.fallback_arch:
        raise TrainConfigError(
            f"No architecture: config.arch is empty, there is no {searched!r}, and "
            "config.fallback_arch is empty. Pass --arch=NAME_OR_ARCH_JSON."
        )
    return parse_arch(config.fallback_arch), f"config.fallback_arch={config.fallback_arch}"


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises TrainConfigError naming the first value that cannot work."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise TrainConfigError(message)

    need(int(config.batch_size) >= 1, f"batch_size must be >= 1, got {config.batch_size}.")
    need(
        int(config.eval_batch_size) >= 0,
        f"eval_batch_size must be >= 0, got {config.eval_batch_size}.",
    )
    need(
        float(config.epochs) > 0 or int(config.train_steps) > 0,
        f"epochs must be > 0 (or train_steps set), got {config.epochs}.",
    )
    need(int(config.train_steps) >= 0, f"train_steps must be >= 0, got {config.train_steps}.")
    need(
        float(config.steps_per_epoch) >= 0,
        f"steps_per_epoch must be >= 0, got {config.steps_per_epoch}.",
    )
    need(
        float(config.warmup_epochs) >= 0, f"warmup_epochs must be >= 0, got {config.warmup_epochs}."
    )
    need(float(config.lr) > 0, f"lr must be > 0, got {config.lr}.")
    need(
        float(config.lr_decay_epochs) > 0,
        f"lr_decay_epochs must be > 0, got {config.lr_decay_epochs}.",
    )
    need(
        0 < float(config.lr_decay_rate) <= 1,
        f"lr_decay_rate must be in (0, 1], got {config.lr_decay_rate}.",
    )
    need(0 <= float(config.ema_decay) < 1, f"ema_decay must be in [0, 1), got {config.ema_decay}.")
    need(
        0 <= float(config.label_smoothing) < 1,
        f"label_smoothing must be in [0, 1), got {config.label_smoothing}.",
    )
    need(float(config.weight_decay) >= 0, f"weight_decay must be >= 0, got {config.weight_decay}.")
    need(
        int(config.checkpoint_every) >= 1,
        f"checkpoint_every must be >= 1, got {config.checkpoint_every}.",
    )
    need(int(config.log_every) >= 1, f"log_every must be >= 1, got {config.log_every}.")
    need(
        int(config.bn_recalibration_batches) >= 0,
        f"bn_recalibration_batches must be >= 0, got {config.bn_recalibration_batches}.",
    )
    need(
        config.strategy in STRATEGIES,
        f"strategy must be one of {STRATEGIES}, got {config.strategy!r}.",
    )


def schedule_lengths(config: ml_collections.ConfigDict, num_examples: int) -> tuple[float, int]:
    """Steps per epoch (float) and total optimizer steps.

    As MnasNet: ``steps_per_epoch = images / batch`` and ``total =
    int(epochs * images / batch)`` (ImageNet, 350 epochs, batch 1024: 437,898).
    ``config.steps_per_epoch`` and ``config.train_steps`` override them.
    """
    per_epoch = float(config.steps_per_epoch) or num_examples / int(config.batch_size)
    total = int(config.train_steps) or int(float(config.epochs) * per_epoch)
    return per_epoch, max(1, total)


def _model_plan(config, arch, num_classes: int | None) -> ModelPlan:
    return plan_model(
        arch,
        num_classes=num_classes,
        input_size=int(config.image_size),
        width=float(config.width) or None,
        dropout=float(config.dropout),
    )


def _arch_summary(arch, source: str, plan: ModelPlan) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": plan.name,
        "source": source,
        "stages": list(plan.stages),
        "width": plan.width,
        "input_size": plan.input_size,
    }
    if isinstance(arch, str) and os.path.isfile(arch):
        with open(arch) as f:
            data = json.load(f)
        out.update(
            file=os.path.abspath(arch),
            sha256=sha256_file(arch),
            layers=data.get("layers"),
            predicted_ms=data.get("predicted_ms"),
        )
    return out


def _restore(model, directory: str, plan: ModelPlan) -> int:
    """Restores a previous run's checkpoint (run_fit restores it again, cheaply).

    Done here first so that a checkpoint of another model gets one clear line
    instead of Keras' list of every layer that did not fit.
    """
    from spnas.train.runner import restore_checkpoint

    try:
        return restore_checkpoint(model, directory)
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainConfigError(
            f"The checkpoint in {directory} does not fit {plan.name} as configured (another "
            f"architecture or configuration wrote it: {first[:200]}). Use a new work directory "
            "or delete that one."
        ) from None


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the configured architecture; returns the train_report.json dictionary.

    Raises:
      TrainConfigError, ArchitectureError, ArchError, UnknownArchError,
      DatasetError, FileNotFoundError, PermissionError, TrainingDivergedError:
        each with a message naming the problem.
    """
    check_config(config)
    arch, source = resolve_arch(config, os.path.abspath(workdir))
    _model_plan(config, arch, None)  # architecture and downsampling, before TF loads
    workdir = check_writable_dir(workdir)
    return _train(config, workdir, arch, source)


def _train(config, workdir: str, arch, source: str) -> dict:
    import keras

    from spnas.data import build_dataset, dataset_info
    from spnas.models.builder import build_from_plan
    from spnas.train.distribute import get_strategy
    from spnas.train.metrics import GlobalStepTensorBoard, TrainLogger
    from spnas.train.optim import ema_weights
    from spnas.train.precise_bn import recalibrate_batch_norm
    from spnas.train.runner import TqdmProgress, run_fit
    from spnas.train.schedule import MnasNetSchedule

    # Before any tensor exists: cpu_replicas splits the CPU into logical devices.
    strategy = get_strategy(config.strategy, config.tpu, int(config.cpu_replicas))
    keras.utils.set_random_seed(int(config.seed))
    data_kw = dict(
        data_dir=config.data_dir or None,
        manual_dir=config.manual_dir or None,
        validation_fraction=config.validation_fraction,
        seed=int(config.seed),
    )
    info = dataset_info(config.dataset, "train", **data_kw)
    num_classes = int(config.num_classes) if config.num_classes > 0 else info.num_classes
    plan = _model_plan(config, arch, num_classes)
    per_epoch, total_steps = schedule_lengths(config, info.num_examples)
    batch = int(config.batch_size)
    eval_batch = int(config.eval_batch_size) or batch
    replicas = strategy.num_replicas_in_sync
    for name, value in (("batch_size", batch), ("eval_batch_size", eval_batch)):
        if value % replicas:
            # tf.distribute then splits batches unevenly, which fails inside TensorFlow.
            raise TrainConfigError(f"{name}={value} is not divisible by the {replicas} replicas.")
    train_ds, _ = build_dataset(
        config.dataset,
        "train",
        batch,
        plan.input_size,
        training=True,
        augment=config.augment,
        on_corrupt=config.on_corrupt,
        **data_kw,
    )
    eval_ds, eval_info = build_dataset(
        config.dataset,
        config.eval_split,
        eval_batch,
        plan.input_size,
        training=False,
        on_corrupt=config.on_corrupt,
        **data_kw,
    )

    lr = MnasNetSchedule(
        config.lr,
        max(1, int(per_epoch)),
        config.lr_decay_epochs,
        config.lr_decay_rate,
        config.warmup_epochs,
    )
    top_k = min(5, num_classes)
    with strategy.scope():
        model = compile_model(plan, config, lr)

    ckpt_dir = os.path.join(workdir, CHECKPOINT_DIR)
    resumed_from = _restore(model, ckpt_dir, plan)
    logger = TrainLogger(os.path.join(workdir, LOG_FILE), config.log_every, per_epoch, lr)
    tensorboard = GlobalStepTensorBoard(
        os.path.join(workdir, TENSORBOARD_DIR), update_freq=int(config.log_every), write_graph=False
    )
    progress = TqdmProgress(total_steps, keys=("loss", "accuracy"), desc="train")
    params = plan.count_params()
    print(
        f"spnas-train: {plan.name} ({source}), {params:,} parameters, "
        f"{plan.input_size}x{plan.input_size}; {config.dataset} ({info.num_examples} train "
        f"images, {num_classes} classes), batch {batch} on {strategy.num_replicas_in_sync} "
        f"replica(s); {total_steps} steps ({per_epoch:.2f}/epoch), warm-up "
        f"{config.warmup_epochs:g} epochs, peak lr {config.lr:g}"
        + (f"; resuming at step {resumed_from}" if resumed_from else "")
    )
    t0 = time.time()
    try:
        steps = run_fit(
            model,
            train_ds,
            total_steps,
            ckpt_dir,
            int(config.checkpoint_every),
            [logger, tensorboard, progress],
        )
    finally:
        progress.close()
        logger.close()
    seconds = time.time() - t0

    recal = int(config.bn_recalibration_batches)
    moving_stats_result = None
    with ema_weights(model):
        if recal:
            # The EMA weights never produced BN statistics; see spnas/train/precise_bn.py.
            # This replaces the training model's moving statistics (the checkpoint keeps
            # the originals).
            moving_stats_result = model.evaluate(eval_ds, verbose=0, return_dict=True)
            recalibrate_batch_norm(model, train_ds, recal)
        result = model.evaluate(eval_ds, verbose=0, return_dict=True, callbacks=[tensorboard])
        final = build_from_plan(plan)  # plain layers, no optimizer: what the exporter loads
        final.set_weights(model.get_weights())
    save_model_atomic(final, os.path.join(workdir, MODEL_FILE))

    report = {
        "format": REPORT_FORMAT,
        "top1": float(result["accuracy"]),
        "top5": float(result["top5"]),
        "top5_k": top_k,
        "eval_loss": float(result["loss"]),
        "eval_split": config.eval_split,
        "eval_images": eval_info.num_examples,
        "weights": "ema" if config.ema_decay > 0 else "raw",
        "bn_recalibration_batches": recal,
        "top1_moving_stats": (
            float(moving_stats_result["accuracy"]) if moving_stats_result else None
        ),
        "steps": int(steps),
        "epochs": round(steps / per_epoch, 4),
        "params": params,
        "seconds": round(seconds, 1),  # training time of this invocation
        "resumed_from_step": resumed_from,
        "arch": _arch_summary(arch, source, plan),
        "dataset": config.dataset,
        "train_images": info.num_examples,
        "num_classes": num_classes,
        "batch_size": batch,
        "replicas": strategy.num_replicas_in_sync,
        "model_file": MODEL_FILE,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
    }
    atomic_write_json(os.path.join(workdir, REPORT_FILE), report)
    print(
        f"{plan.name}: top-1 {100 * report['top1']:.2f} %, top-{top_k} "
        f"{100 * report['top5']:.2f} % on {eval_info.num_examples} {config.eval_split} images "
        f"(EMA weights{', BN statistics recomputed' if recal else ''}) after {steps} steps; "
        f"training took {seconds:.0f} s"
    )
    if moving_stats_result:
        print(
            f"  (top-1 with the trained BN moving statistics: "
            f"{100 * report['top1_moving_stats']:.2f} %)"
        )
    print(f"model: {os.path.join(workdir, MODEL_FILE)}")
    print(f"report: {os.path.join(workdir, REPORT_FILE)}")
    return report


def compile_model(plan: ModelPlan, config: ml_collections.ConfigDict, learning_rate):
    """The plan's model compiled with the config's loss, optimizer and metrics.

    MnasRMSprop keeps the weight EMA (``ema_decay``; 0 = none); the loss is
    label-smoothed cross-entropy on logits, plus the L2 terms of the layers'
    regularizers (``weight_decay / 2 * ||w||^2``); metrics are top-1
    (``accuracy``) and top-5 (``top5``; top-k with k = min(5, classes)).
    Call it inside ``strategy.scope()`` for a distributed run.
    """
    import keras

    from spnas.models.builder import build_from_plan
    from spnas.train.optim import MnasRMSprop

    model = build_from_plan(plan, weight_decay=float(config.weight_decay))
    model.compile(
        optimizer=MnasRMSprop(
            learning_rate, ema_momentum=config.ema_decay, use_ema=config.ema_decay > 0
        ),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        ),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=min(5, plan.num_classes), name="top5"),
        ],
        jit_compile=bool(config.jit_compile) and not config.run_eagerly,
        run_eagerly=bool(config.run_eagerly),
    )
    return model


def save_model_atomic(model, path: str) -> None:
    """``model.save`` to a temporary ``.keras`` beside ``path``, then rename."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.partial.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
