"""``spnas-train``: train a searched (or named) ConvNet from scratch, MnasNet-style.

After the search, Single-Path NAS trains the decoded network from scratch for
350 epochs with the MnasNet recipe (Stamoulis et al., 2019, Sec. 4.1;
reference-facts.md "Training"): batch 1024, RMSProp (decay 0.9, momentum 0.9,
epsilon 1e-3), LR 0.016 per 256 images with a 5-epoch linear warm-up, then
x0.97 every 2.4 epochs (staircase, counted from step 0), weight EMA 0.9999,
label smoothing 0.1, weight decay 1e-5 (``wd/2 ||w||^2`` on non-BN weights),
dropout 0.2, float32. The EMA weights are the ones evaluated and exported. The
recipe's steps are those of the search (:mod:`spnas.train.recipe`); this module
adds the plain model, the report and model.keras.

Outputs in the work directory: ``train_report.json`` (top-1/top-5 of the EMA
weights on the evaluation split, steps, parameters, time, architecture),
``model.keras`` (the EMA weights in a plain Keras model of standard layers, for
``spnas-export``), ``train_log.csv``, TensorBoard logs under ``tb/`` and the
resumable checkpoint under ``checkpoints/``. All files are written atomically.

Everything that can be wrong with the input (architecture, its downsampling,
the work directory, the config's numbers) is checked before TensorFlow is
imported (:mod:`spnas.train.checks`), so a bad command fails in about a second
with one line.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from typing import Any

import ml_collections

from spnas.arch.handoff import Arch
from spnas.arch.plan import ArchLike, ModelPlan
from spnas.fileio import atomic_write_json
from spnas.models.builder import build_from_plan
from spnas.train import recipe
from spnas.train.checks import (  # noqa: F401  (re-exported: the trainer's public names)
    ARCH_FILE,
    Prepared,
    TrainConfigError,
    parse_arch,
    prepare,
    resolve_arch,
    with_classes,
)
from spnas.train.distribute import is_chief
from spnas.train.metrics import TrainLogger
from spnas.train.recipe import schedule_lengths  # noqa: F401  (re-exported)
from spnas.train.runner import (
    CheckpointError,
    TqdmProgress,
    checkpoint_step,
    restore_checkpoint,
)
from spnas.train.scalars import TrainScalars
from spnas.workdir import RUN_FILE, StageRun, begin_stage, locked

REPORT_FILE = "train_report.json"
MODEL_FILE = "model.keras"  # read by spnas-export
LOG_FILE = "train_log.csv"
REPORT_FORMAT = "spnas.train_report/1"
# Apart from spnas-search's checkpoints/ and tb/ in the same work directory.
CHECKPOINT_DIR = "train_checkpoints"
TENSORBOARD_DIR = os.path.join("tb", "train")


def _arch_summary(arch: ArchLike, source: str, plan: ModelPlan) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": plan.name,
        "source": source,
        "stages": list(plan.stages),
        "width": plan.width,
        "input_size": plan.input_size,
    }
    if isinstance(arch, Arch):  # read once by spnas.train.checks (or handed over)
        out.update(file=arch.path, sha256=arch.sha256, layers=arch.layers,
                   predicted_ms=arch.get("predicted_ms"))
    return out


def _restore(model, directory: str, plan: ModelPlan) -> int:
    """Restores a previous run's checkpoint (run_fit restores it again, cheaply).

    Done here first so that a checkpoint of another model gets one clear line
    instead of Keras' list of every layer that did not fit.
    """
    try:
        return restore_checkpoint(model, directory)
    except CheckpointError:
        raise  # damaged files: that message says what to do
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainConfigError(
            f"The checkpoint in {directory} does not fit {plan.name} as configured (another "
            f"architecture or configuration wrote it: {first[:200]}). Use a new work directory "
            "or delete that one."
        ) from None


def run(config: ml_collections.ConfigDict, workdir: str, arch: ArchLike | None = None,
        prepared: Prepared | None = None) -> dict:
    """Trains the configured architecture; returns the train_report.json dictionary.

    Args:
      config: a training config (configs/train_default.py).
      workdir: the work directory.
      arch: what to train (spnas-pipeline passes the search's :class:`Arch`); None
        resolves it from the config and the work directory.
      prepared: the result of :func:`spnas.train.checks.prepare` when the caller
        ran the checks already (spnas-train does, before TensorFlow loads).

    The work directory is locked for the run and the run is checked against its
    record (``run.json``; :mod:`spnas.workdir`): a rerun continues the same
    training, returns the report of a finished one without rewriting anything, or
    is refused (TrainConfigError) when the config or the architecture differs.

    Raises:
      TrainConfigError, ArchError, UnknownArchError, DatasetError,
      FileNotFoundError, PermissionError, TrainingDivergedError, CheckpointError,
      WorkdirBusy, RunRecordError: each with a message naming the problem.
      Interrupted: SIGINT/SIGTERM during training (a checkpoint was saved).
    """
    prepared = prepared or prepare(config, workdir, arch)
    workdir = prepared.workdir
    strategy = recipe.start(config)  # before any tensor exists
    chief = is_chief()  # the other hosts of a cluster share the chief's directory and lock
    with locked(workdir, take=chief):
        inputs = ({"arch_sha256": prepared.arch.sha256}
                  if isinstance(prepared.arch, Arch) and prepared.arch.sha256 else {})
        stage = begin_stage(workdir, "train", config.to_dict(), inputs=inputs, write=chief,
                            progress=checkpoint_step(os.path.join(workdir, CHECKPOINT_DIR)),
                            error=TrainConfigError, prog="spnas-train")
        if stage.finished:
            return _recorded(workdir, stage)
        report = _train(config, prepared, strategy)
        stage.finish({"file": REPORT_FILE, "model": MODEL_FILE, "steps": report["steps"]})
        return report


def _recorded(workdir: str, stage: StageRun) -> dict:
    """The train_report.json of a finished training (nothing is rewritten)."""
    path = os.path.join(workdir, REPORT_FILE)
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(workdir, MODEL_FILE)):
        raise TrainConfigError(
            f"The training in {workdir} finished ({os.path.join(workdir, RUN_FILE)}) but its "
            f"{REPORT_FILE} or {MODEL_FILE} is gone; restore them, or use a new --workdir to "
            "train again.")
    with open(path) as f:
        report = json.load(f)
    if stage.write:
        print(f"spnas-train: the training in {workdir} is at step {report.get('steps')}, already "
              f"finished with this config (recorded in {RUN_FILE}); nothing is rewritten. "
              f"report: {path}", file=sys.stderr)
    return report


def _train(config: ml_collections.ConfigDict, prepared: Prepared, strategy) -> dict:
    """The training itself, in a locked and recorded work directory."""
    workdir = prepared.workdir
    info, num_classes = recipe.train_info(config)
    plan = with_classes(prepared.plan, num_classes)
    lengths = recipe.schedule_lengths(config.schedule, info.num_examples)
    recipe.check_batches(config.schedule, strategy.num_replicas_in_sync)
    data = recipe.build_datasets(config, plan.input_size, eval_split=config.eval_split)
    lr = recipe.learning_rate(config.schedule, lengths)
    with strategy.scope():
        model = compile_model(plan, config, lr)

    ckpt_dir = os.path.join(workdir, CHECKPOINT_DIR)
    resumed_from = _restore(model, ckpt_dir, plan)
    logger = TrainLogger(os.path.join(workdir, LOG_FILE), config.execution.log_every,
                         lengths.per_epoch, lr)
    tensorboard = TrainScalars(os.path.join(workdir, TENSORBOARD_DIR),
                               int(config.execution.log_every), lr)
    progress = TqdmProgress(lengths.total, keys=("loss", "accuracy"), desc="train")
    s = config.schedule
    print(
        f"spnas-train: {plan.name} ({prepared.source}), {plan.count_params():,} parameters, "
        f"{plan.input_size}x{plan.input_size}; {config.data.dataset} ({data.info.num_examples} "
        f"train images{f', {data.info.skipped} corrupt skipped' if data.info.skipped else ''}, "
        f"{num_classes} classes), batch {s.batch_size} on "
        f"{strategy.num_replicas_in_sync} replica(s); {lengths.total} steps "
        f"({lengths.per_epoch:.2f}/epoch), warm-up {s.warmup_epochs:g} epochs, peak lr {s.lr:g}"
        + (f"; resuming at step {resumed_from}" if resumed_from else "")
    )
    try:
        steps, seconds = recipe.fit(model, data, lengths.total, ckpt_dir, config,
                                    [logger, tensorboard, progress], closing=(progress, logger))
        with recipe.ema_evaluation(model, data, int(s.bn_recalibration_batches),
                                   moving_stats=True) as ev:
            final = build_from_plan(plan)  # plain layers, no optimizer: what the exporter loads
            final.set_weights(model.get_weights())
        tensorboard.write_eval(steps, ev.result)
    finally:
        tensorboard.close()
    report = _report(config, prepared, plan, data, ev, steps, lengths, seconds, resumed_from,
                     strategy.num_replicas_in_sync)
    report["reproducibility"] = recipe.reproducibility(config, strategy, resumed_from)
    if is_chief():  # the other hosts of a cluster write (and print) nothing
        save_model_atomic(final, os.path.join(workdir, MODEL_FILE))
        atomic_write_json(os.path.join(workdir, REPORT_FILE), report)
        _print_result(report, plan, workdir)
    return report


def _report(config, prepared: Prepared, plan: ModelPlan, data: recipe.Datasets,
            ev: recipe.EmaEvaluation, steps: int, lengths: recipe.Lengths, seconds: float,
            resumed_from: int, replicas: int) -> dict:
    result, before = ev.result, ev.moving_stats
    return {
        "format": REPORT_FORMAT,
        "top1": float(result["accuracy"]),
        "top5": float(result["top5"]),
        "top5_k": min(5, plan.num_classes),
        "eval_loss": float(result["loss"]),
        "eval_split": data.eval_split,
        "eval_images": data.eval_info.num_examples,
        "weights": "ema" if config.schedule.ema_decay > 0 else "raw",
        "bn_recalibration_batches": ev.recalibrated,
        "top1_moving_stats": float(before["accuracy"]) if before else None,
        "steps": int(steps),
        "epochs": round(steps / lengths.per_epoch, 4),
        "params": plan.count_params(),
        "seconds": round(seconds, 1),  # training time of this invocation
        "resumed_from_step": resumed_from,
        "arch": _arch_summary(prepared.arch, prepared.source, plan),
        "dataset": config.data.dataset,
        "train_images": data.info.num_examples,
        "skipped_corrupt": {"train": data.info.skipped, "validation": data.eval_info.skipped},
        "num_classes": plan.num_classes,
        "batch_size": int(config.schedule.batch_size),
        "replicas": replicas,
        "model_file": MODEL_FILE,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
    }


def _print_result(report: dict, plan: ModelPlan, workdir: str) -> None:
    recal = report["bn_recalibration_batches"]
    print(
        f"{plan.name}: top-1 {100 * report['top1']:.2f} %, top-{report['top5_k']} "
        f"{100 * report['top5']:.2f} % on {report['eval_images']} {report['eval_split']} images "
        f"(EMA weights{', BN statistics recomputed' if recal else ''}) after {report['steps']} "
        f"steps; training took {report['seconds']:.0f} s"
    )
    if report["top1_moving_stats"] is not None:
        print(
            f"  (top-1 with the trained BN moving statistics: "
            f"{100 * report['top1_moving_stats']:.2f} %)"
        )
    print(f"model: {os.path.join(workdir, MODEL_FILE)}")
    print(f"report: {os.path.join(workdir, REPORT_FILE)}")


def compile_model(plan: ModelPlan, config: ml_collections.ConfigDict, learning_rate):
    """The plan's model compiled with the recipe's loss, optimizer and metrics.

    MnasRMSprop keeps the weight EMA (``schedule.ema_decay``; 0 = none); the
    loss is label-smoothed cross-entropy on logits, plus the L2 terms of the
    layers' regularizers (``weight_decay / 2 * ||w||^2``); metrics are top-1
    (``accuracy``) and top-5 (``top5``; top-k with k = min(5, classes)).
    Call it inside ``strategy.scope()`` for a distributed run.
    """
    model = build_from_plan(plan, weight_decay=float(config.schedule.weight_decay))
    return recipe.compile_model(model, config, learning_rate,
                                recipe.metrics(config.schedule, top_k=min(5, plan.num_classes)))


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
