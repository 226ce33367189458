"""Sections shared by the search, training and export configs (big_vision manner).

Every config of spnas is composed of the same sections, so one key has one
name everywhere and the pipeline can hand one section from one stage to the
next:

* ``c.data`` (:func:`data`): which images, how they are split and read, at which
  size. The search space takes its input size from ``data.image_size``; the
  pipeline drives search, training and export with one data section.
* ``c.schedule`` (:func:`schedule`): the MnasNet training recipe both the search
  and the trainer run (``spnas/train/recipe.py``): batch, epochs, learning rate
  and its decay, weight EMA, label smoothing, weight decay, BN recalibration.
* ``c.execution`` (:func:`execution`): where and how it runs (strategy, XLA,
  checkpoint and log periods).

``c.seed`` stays top-level (it seeds the data split, shuffling, augmentation and
initialisation). Derived values (``lr`` from ``lr_per_256``, warm-up from
``epochs``) are field references, so ``--config.schedule.batch_size=128`` also
moves the learning rate.

Loading a config imports neither Keras nor TensorFlow: the MnasNet constants are
defined here (``spnas.train.schedule`` keeps the same values, pinned by a test).
"""

import ml_collections

# MnasNet / Single-Path NAS recipe (reference-facts.md "Search" and "Training").
LR_PER_256 = 0.016  # 0.016 per 256 images (0.064 at batch 1024)
DECAY_EPOCHS = 2.4
DECAY_RATE = 0.97
EMA_DECAY = 0.9999
LABEL_SMOOTHING = 0.1
WEIGHT_DECAY = 1e-5
PAPER_SEARCH_EPOCHS = 8.0
PAPER_SEARCH_WARMUP_EPOCHS = 5.0  # lambda = 0 and indicator dropout
PAPER_TRAIN_EPOCHS = 350.0
PAPER_TRAIN_WARMUP_EPOCHS = 5.0  # linear learning-rate warm-up
PAPER_BATCH_SIZE = 1024
IMAGENET = "imagenet2012"


def data(dataset: str = "embedded", image_size: int = 32) -> ml_collections.ConfigDict:
    """The data section: ``dataset`` and how its images are read, split and sized.

    Keys: ``dataset`` (``embedded``, ``imagenet2012``, ``folder:/path`` or a
    prepared TFDS name), ``data_dir`` (TFDS data directory), ``manual_dir``
    (ImageNet's two ILSVRC2012 tars), ``on_corrupt`` (``error`` or ``skip``),
    ``validation_fraction`` (held-out share where the dataset has no validation
    split; seeded by the top-level ``seed``), ``augment`` (None: the dataset's
    default), ``num_classes`` (-1: from the dataset), ``image_size`` (the
    network's input height and width) and ``input`` (``auto``: tf.data when
    TensorFlow is installed, else the Pillow/numpy ``keras.utils.PyDataset``;
    ``tf`` or ``numpy`` to choose).
    """
    d = ml_collections.ConfigDict()
    d.dataset = dataset  # embedded | imagenet2012 | folder:/path (train/<class>/*.jpg) | a TFDS name
    d.data_dir = ""  # TFDS data directory ("": TFDS default)
    d.manual_dir = ""  # folder of ImageNet's two ILSVRC2012 tars (TFDS manual_dir)
    d.on_corrupt = "error"  # or "skip": skip and count unreadable images
    d.validation_fraction = 0.1  # held-out share where the dataset has no validation split
    d.augment = ml_collections.FieldReference(None, field_type=str)  # None: dataset default
    d.num_classes = -1  # -1: from the dataset
    d.image_size = image_size  # the network's input height and width
    d.input = "auto"  # auto | tf | numpy (the TensorFlow-free input pipeline)
    return d


def schedule(
    batch_size: int = 64,
    epochs: float = PAPER_SEARCH_EPOCHS,
    warmup_fraction: float = 0.0,
    bn_recalibration_batches: int = 0,
) -> ml_collections.ConfigDict:
    """The schedule section: the MnasNet recipe, scaled by ``epochs``.

    ``lr = lr_per_256 * batch_size / 256`` and ``warmup_epochs = epochs *
    warmup_fraction`` (the linear learning-rate warm-up; the search has none)
    are derived. ``steps_per_epoch`` (0: images / batch_size) and
    ``train_steps`` (0: from ``epochs``) override the lengths;
    ``eval_batch_size`` 0 means ``batch_size``. ``bn_recalibration_batches``
    recomputes the BN statistics for the EMA weights over that many training
    batches before the final evaluation (spnas/train/precise_bn.py; 0 = off).
    """
    s = ml_collections.ConfigDict()
    s.batch_size = batch_size  # global batch (all replicas); lr follows
    s.eval_batch_size = 0  # 0: batch_size
    s.epochs = float(epochs)  # the recipe's length; decay and warm-ups scale with it
    s.warmup_epochs = s.get_ref("epochs") * float(warmup_fraction)  # linear lr warm-up
    s.steps_per_epoch = 0.0  # 0: train images / batch_size
    s.train_steps = 0  # 0: from epochs
    s.lr_per_256 = LR_PER_256  # peak learning rate per 256 images (MnasNet 0.016)
    s.lr = s.get_ref("lr_per_256") * s.get_ref("batch_size") / 256.0  # derived; set lr_per_256
    s.lr_decay_epochs = DECAY_EPOCHS  # staircase decay period (MnasNet 2.4 epochs)
    s.lr_decay_rate = DECAY_RATE  # decay factor per period (MnasNet 0.97)
    s.ema_decay = EMA_DECAY  # 0: no EMA (the raw weights are evaluated)
    s.label_smoothing = LABEL_SMOOTHING  # MnasNet 0.1
    s.weight_decay = WEIGHT_DECAY  # L2 on non-BN weights (MnasNet 1e-5)
    s.bn_recalibration_batches = bn_recalibration_batches  # BN statistics recomputed for the EMA weights (0: off)
    return s


def execution(checkpoint_every: int = 100, log_every: int = 10) -> ml_collections.ConfigDict:
    """The execution section: strategy (TensorFlow backend: ``auto``, ``cpu``,
    ``mirrored`` (+ ``cpu_replicas`` for CPU data parallelism), ``multiworker``
    (``TF_CONFIG``), ``tpu`` (+ ``tpu=NAME``); JAX backend: ``auto``,
    ``data_parallel`` (+ ``jax_distributed`` for several hosts)), XLA, eager mode
    (tests), checkpoint and log periods in steps, deterministic kernels."""
    e = ml_collections.ConfigDict()
    e.strategy = "auto"  # TF: auto | cpu | mirrored | multiworker | tpu; JAX: auto | data_parallel
    e.tpu = ""  # TPU name or address for strategy=tpu ("": the local TPU VM)
    e.cpu_replicas = 1  # mirrored on CPU: virtual CPU devices to replicate over
    # JAX, several hosts: call jax.distributed.initialize() first. The three below are
    # its arguments; left empty/0/-1 they are detected (Cloud TPU VM slices, SLURM, MPI).
    e.jax_distributed = False
    e.coordinator_address = ""  # host:port of process 0
    e.num_processes = 0  # 0: detected
    e.process_id = -1  # -1: detected
    e.jit_compile = False  # TF: XLA on CPU is several times slower for these nets (JAX: always)
    e.run_eagerly = False  # True: no graph build (~30 s+ on 2 busy cores); for few-step tests
    e.checkpoint_every = checkpoint_every  # steps between checkpoints (a rerun resumes there)
    e.log_every = log_every  # steps between log rows (CSV, TensorBoard)
    # Same seed, same result: TensorFlow's deterministic kernels and one inter-op thread
    # (XLA's deterministic ops on the JAX backend). False trades that for speed where a
    # backend has faster non-deterministic kernels (GPU convolutions, scatter/segment
    # ops); on 2 CPU cores it costs about 4 % per search step (bench/determinism_cost.py).
    e.deterministic = True
    return e

