"""The one training recipe of spnas: what ``spnas-search`` and ``spnas-train`` share.

Single-Path NAS trains its supernet and then the searched net with the same
MnasNet recipe (Stamoulis et al., 2019, Sec. 4; reference-facts.md "Search" and
"Training"): RMSProp 0.9/0.9/1e-3 with the accumulator at 1
(:class:`spnas.train.optim.MnasRMSprop`), LR ``lr_per_256 * batch / 256``
decayed x0.97 every 2.4 epochs (:class:`spnas.train.schedule.MnasNetSchedule`,
with an optional linear warm-up), weight EMA 0.9999, label-smoothed (0.1)
cross-entropy on logits, weight decay on the non-BN weights, resumable
step-exact training (:func:`spnas.train.runner.run_fit`), and the evaluation of
the EMA weights after recomputing their BN statistics
(:func:`spnas.train.precise_bn.recalibrate_batch_norm`).

The steps read the config sections of ``configs/common.py``: ``config.data``,
``config.schedule``, ``config.execution`` and the top-level ``config.seed``.
What differs between search and training (supernet, lambda schedule, decoding,
arch.json vs the plain model, report, model.keras) stays in
:mod:`spnas.search.run` and :mod:`spnas.train.run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import math
import platform
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import keras
import ml_collections

from spnas.data import DatasetInfo, build_dataset, dataset_info, dataset_kind
from spnas.errors import UserError
from spnas.train.distribute import (
    enable_determinism,
    get_strategy,
    local_replicas,
    process_share,
)
from spnas.train.optim import MnasRMSprop, StatisticAverages, ema_weights, moving_statistics
from spnas.train.precise_bn import recalibrate_batch_norm
from spnas.train.runner import run_fit
from spnas.train.schedule import MnasNetSchedule


class RecipeConfigError(UserError):
    """The data, schedule or execution section cannot work as configured."""


class Lengths(NamedTuple):
    """Optimizer steps per epoch and in total (unpacks as ``per_epoch, total``)."""

    per_epoch: float
    total: int

    def steps(self, epochs: float) -> int:
        """``ceil(epochs * per_epoch)`` steps, at most ``total`` (0 for no epochs)."""
        if epochs <= 0:
            return 0
        return min(self.total, max(1, int(math.ceil(float(epochs) * self.per_epoch))))


@dataclasses.dataclass(frozen=True)
class Datasets:
    """The training and evaluation pipelines of one data section."""

    train: Any  # tf.data.Dataset, shuffled, repeated, augmented (from its first batch)
    eval: Any  # tf.data.Dataset, one deterministic pass
    info: DatasetInfo  # of the train split
    eval_info: DatasetInfo
    eval_split: str
    train_from: Any = None  # step -> a new training stream from that batch on (resumes)


@dataclasses.dataclass(frozen=True)
class EmaEvaluation:
    """Metrics of the EMA weights; ``moving_stats`` before BN recalibration (if asked)."""

    result: dict
    moving_stats: dict | None
    recalibrated: int  # BN recalibration batches used (0: the moving statistics as trained)


def data_kwargs(config: ml_collections.ConfigDict) -> dict:
    """The keyword arguments of :func:`spnas.data.build_dataset` shared by every split:
    the same data directory, validation split and seed for search, training and export."""
    data = config.data
    return dict(
        data_dir=data.data_dir or None,
        manual_dir=data.manual_dir or None,
        validation_fraction=data.validation_fraction,
        seed=int(config.seed),
    )


def pipeline_kwargs(config: ml_collections.ConfigDict) -> dict:
    """:func:`data_kwargs` plus how images are read: ``augment`` and ``on_corrupt``.

    Every pipeline of a config (training, evaluation, BN recalibration, export
    calibration and checks) takes these, so an evaluation preprocesses its images
    as the training did (``augment`` also picks the evaluation transform: the
    MnasNet centre crop for ``mnasnet``, the whole image for the others), and
    ``input``, the pipeline (tf.data or the TensorFlow-free PyDataset). In a
    multi-host JAX run each host's pipelines yield its share of the global batches.
    """
    kw = dict(data_kwargs(config), augment=config.data.augment or None,
              on_corrupt=config.data.on_corrupt, input=input_pipeline(config))
    index, count = process_share()
    if count > 1:  # JAX on several hosts: each feeds its share of every global batch
        kw.update(process_index=index, process_count=count)
    return kw


def input_pipeline(config: ml_collections.ConfigDict) -> str:
    """``data.input``, with ``auto`` resolved by backend: on JAX the numpy PyDataset for
    the digits and image folders (no TensorFlow in the loop; padded data-parallel
    evaluation), tf.data for TFDS; on TensorFlow, tf.data (``spnas.data`` decides)."""
    chosen = config.data.get("input", "auto")
    if chosen == "auto" and keras.backend.backend() == "jax" and (
            dataset_kind(config.data.dataset) in ("embedded", "folder")):
        return "numpy"
    return chosen


def train_info(config: ml_collections.ConfigDict) -> tuple[DatasetInfo, int]:
    """The train split's info and the number of classes (``data.num_classes`` or the
    dataset's), without building a pipeline (an image folder is scanned for corrupt
    files, so the count is of the images used; the pipeline reuses the scan)."""
    info = dataset_info(config.data.dataset, "train", input=input_pipeline(config),
                        on_corrupt=config.data.on_corrupt, **data_kwargs(config))
    n = int(config.data.num_classes)
    return info, n if n > 0 else info.num_classes


def start(config: ml_collections.ConfigDict, seed_first: bool = False):
    """The strategy of ``config.execution`` (tf.distribute's, or the JAX backend's
    :class:`spnas.train.jax_distribute.JaxStrategy`), after seeding.

    Call it before any tensor exists: ``cpu_replicas`` splits the CPU into
    logical devices, which TensorFlow allows only before it starts. The order
    of seeding and starting TensorFlow decides the initial weights: the search
    seeds first (``seed_first``), the trainer after (each as it always has, so
    that a seed reproduces earlier runs). ``execution.deterministic`` (default)
    turns on deterministic kernels first.
    """
    ex = config.execution
    if ex.get("deterministic", True):
        enable_determinism()
    if seed_first:
        keras.utils.set_random_seed(int(config.seed))
    strategy = get_strategy(
        ex.strategy, ex.tpu, int(ex.cpu_replicas), bool(ex.get("jax_distributed", False)),
        coordinator_address=ex.get("coordinator_address", ""),
        num_processes=int(ex.get("num_processes", 0)), process_id=int(ex.get("process_id", -1)))
    if not seed_first:
        keras.utils.set_random_seed(int(config.seed))
    return strategy


def reproducibility(config: ml_collections.ConfigDict, strategy, resumed_from_step: int = 0) -> dict:
    """What a run's result rests on, for arch.json and train_report.json: the seed,
    deterministic kernels on or off, backend, library versions and replicas. Two runs
    that agree on all of it give the same result on one machine."""

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "seed": int(config.seed),
        "deterministic": bool(config.execution.get("deterministic", True)),
        "backend": keras.backend.backend(),
        "versions": {"python": platform.python_version(),
                     **{p: version(p) for p in ("spnas", "tensorflow", "keras", "jax", "numpy")}},
        "replicas": int(strategy.num_replicas_in_sync),
        "resumed_from_step": int(resumed_from_step),
    }


def schedule_lengths(
    schedule: ml_collections.ConfigDict, num_examples: int, whole_batches: bool = False
) -> Lengths:
    """Steps per epoch and total optimizer steps of ``config.schedule``.

    As MnasNet (``whole_batches=False``, the trainer): ``per_epoch = images /
    batch`` and ``total = int(epochs * per_epoch)`` (ImageNet, 350 epochs, batch
    1024: 437,898). As the Single-Path NAS search (``whole_batches=True``):
    ``per_epoch = images // batch`` and ``total = ceil(epochs * per_epoch)`` (8
    epochs: 10,008). ``schedule.steps_per_epoch`` and ``schedule.train_steps``
    override them.
    """
    batch = int(schedule.batch_size)
    if whole_batches:
        per_epoch = float(int(schedule.steps_per_epoch) or max(1, num_examples // batch))
        total = int(schedule.train_steps) or int(math.ceil(float(schedule.epochs) * per_epoch))
    else:
        per_epoch = float(schedule.steps_per_epoch) or num_examples / batch
        total = int(schedule.train_steps) or int(float(schedule.epochs) * per_epoch)
    return Lengths(per_epoch, max(1, total))


def check_batches(schedule: ml_collections.ConfigDict, replicas: int) -> None:
    """Batch sizes must split evenly over the replicas (else tf.distribute fails inside)."""
    batch = int(schedule.batch_size)
    for name, value in (("batch_size", batch), ("eval_batch_size", eval_batch_size(schedule))):
        if value % replicas:
            raise RecipeConfigError(f"{name}={value} is not divisible by the {replicas} replicas.")


def eval_batch_size(schedule: ml_collections.ConfigDict) -> int:
    return int(schedule.eval_batch_size) or int(schedule.batch_size)


def build_datasets(
    config: ml_collections.ConfigDict, image_size: int, eval_split: str = "validation"
) -> Datasets:
    """Training and evaluation pipelines of ``config.data`` at ``image_size``."""
    data, kw = config.data, pipeline_kwargs(config)

    def train_from(start: int = 0):
        ds, info = build_dataset(data.dataset, "train", int(config.schedule.batch_size),
                                 image_size, training=True, skip_batches=int(start), **kw)
        return ds, info

    train, info = train_from(0)
    pad = {"pad_multiple": local_replicas()} if local_replicas() > 1 else {}
    evalset, eval_info = build_dataset(data.dataset, eval_split, eval_batch_size(config.schedule),
                                       image_size, training=False, **kw, **pad)
    # A fresh pipeline for every use: iterating one seeded, reshuffling dataset a
    # second time gives another order, so a resumed run (whose fit starts on a new
    # pipeline) would recalibrate BN on other batches than an uninterrupted one.
    return Datasets(train, evalset, info, eval_info, eval_split,
                    train_from=lambda start: train_from(start)[0])


def learning_rate(schedule: ml_collections.ConfigDict, lengths: Lengths) -> MnasNetSchedule:
    """The MnasNet staircase (x``lr_decay_rate`` every ``lr_decay_epochs``) with the
    linear warm-up of ``schedule.warmup_epochs`` (0 in the search)."""
    return MnasNetSchedule(schedule.lr, max(1, int(lengths.per_epoch)), schedule.lr_decay_epochs,
                           schedule.lr_decay_rate, schedule.warmup_epochs)


def optimizer(schedule: ml_collections.ConfigDict, lr) -> MnasRMSprop:
    """MnasRMSprop keeping the weight EMA (``ema_decay``; 0 = none)."""
    return MnasRMSprop(lr, ema_momentum=schedule.ema_decay, use_ema=schedule.ema_decay > 0)


def loss(schedule: ml_collections.ConfigDict) -> keras.losses.Loss:
    """Label-smoothed cross-entropy on logits (the L2 terms come from the layers)."""
    return keras.losses.CategoricalCrossentropy(from_logits=True,
                                                label_smoothing=schedule.label_smoothing)


def metrics(schedule: ml_collections.ConfigDict, ce: bool = False, top_k: int = 0) -> list:
    """``ce`` (the smoothed CE without weight decay), top-1 ``accuracy``, ``top5`` (top-k)."""
    out: list = []
    if ce:
        out.append(keras.metrics.CategoricalCrossentropy(
            name="ce", from_logits=True, label_smoothing=schedule.label_smoothing))
    out.append(keras.metrics.CategoricalAccuracy(name="accuracy"))
    if top_k:
        out.append(keras.metrics.TopKCategoricalAccuracy(k=top_k, name="top5"))
    return out


def _jit_compile(ex: ml_collections.ConfigDict) -> bool:
    """XLA for the train step: ``execution.jit_compile`` on TensorFlow (off by default:
    plain TF graphs are faster on CPU), always on JAX, where a step without ``jax.jit``
    runs op by op (Keras' debugging mode; across devices it can even deadlock), unless
    ``run_eagerly``."""
    if ex.run_eagerly:
        return False
    return keras.backend.backend() == "jax" or bool(ex.jit_compile)


def compile_model(model: keras.Model, config: ml_collections.ConfigDict, lr,
                  metric_list: Sequence) -> keras.Model:
    """Compiles ``model`` with the recipe's optimizer and loss (inside ``strategy.scope()``)."""
    ex = config.execution
    model.compile(
        optimizer=optimizer(config.schedule, lr),
        loss=loss(config.schedule),
        # weighted: the zero-weight padding of a data-parallel evaluation batch is not counted
        weighted_metrics=list(metric_list),
        jit_compile=_jit_compile(ex),
        run_eagerly=bool(ex.run_eagerly),
    )
    if model.optimizer.use_ema:  # MnasNet's EMA covers the BN moving statistics too
        model.optimizer.track_moving_statistics(moving_statistics(model))
    # Built now, not inside the first trace of the train step: there Keras would trace
    # the step twice (TensorFlow), and the EMA shadows would start at 0 instead of at
    # the weights (tf.function drops assigns made while it creates variables).
    model.optimizer.build(model.trainable_variables)
    return model


def fit(model: keras.Model, dataset, total_steps: int, checkpoint_dir: str,
        config: ml_collections.ConfigDict, callbacks: Sequence,
        closing: Sequence = ()) -> tuple[int, float]:
    """Trains up to ``total_steps`` (resuming from ``checkpoint_dir``); closes the
    loggers and progress bars in ``closing`` whatever happens.

    ``dataset`` is a :class:`Datasets` (each ``fit`` call then starts the training
    stream at the current global step: a resumed run sees the batches an
    uninterrupted one sees), or a plain training dataset.

    Returns:
      The final global step and the seconds this call trained.
    """
    t0 = time.time()
    try:
        stream = dataset.train_from if isinstance(dataset, Datasets) else dataset
        extra = [StatisticAverages()] if getattr(model.optimizer, "averages_statistics_after_step",
                                                 False) else []
        remedy = "a lower schedule.lr_per_256" + (" or lambda_" if "lambda_" in config else "")
        steps = run_fit(model, stream, total_steps, checkpoint_dir,
                        int(config.execution.checkpoint_every), [*extra, *callbacks], remedy,
                        check_every=int(config.execution.log_every))
    finally:
        for c in closing:
            c.close()
    return steps, time.time() - t0


@contextlib.contextmanager
def ema_evaluation(model: keras.Model, datasets: Datasets, bn_batches: int, *,
                   moving_stats: bool = False, callbacks: Sequence | None = None,
                   inside=None) -> Iterator[EmaEvaluation]:
    """Evaluates the EMA weights; they stay loaded inside the ``with`` (to copy them).

    The EMA weights come with the EMA of the BN moving statistics (as MnasNet's);
    over ``bn_batches`` training batches (0: none) the statistics are recomputed for
    them first (see spnas/train/precise_bn.py). Inside the ``with`` the model holds
    the evaluated weights and statistics; on exit the raw ones come back.
    ``moving_stats`` also evaluates before the recomputation. ``inside`` (a function
    returning a context manager) is entered once the EMA weights are loaded and before
    the recomputation, and left before the raw weights come back: the budget decodes
    force the indicators there, so the statistics are those of the forced net.
    """
    with ema_weights(model), (inside() if inside is not None else contextlib.nullcontext()):
        before = None
        if bn_batches > 0:
            if moving_stats:
                before = model.evaluate(datasets.eval, verbose=0, return_dict=True)
            stream = datasets.train_from(0) if datasets.train_from else datasets.train
            recalibrate_batch_norm(model, stream, bn_batches)
        result = model.evaluate(datasets.eval, verbose=0, return_dict=True,
                                callbacks=list(callbacks) if callbacks else None)
        yield EmaEvaluation(result, before, max(0, int(bn_batches)))
