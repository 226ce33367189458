"""The numpy/Pillow input pipeline (``build_dataset(..., input="numpy")``), without TensorFlow.

The tf.data pipeline (``tf_pipeline.py``) as a ``keras.utils.PyDataset`` for
machines where TensorFlow is not installed (Keras on JAX), for the embedded
digits and image folders (``numpy_source.py``):

* training (:class:`TrainingStream`): an infinite stream (``num_batches`` None).
  Epoch ``e`` visits the split in a permutation seeded from ``(seed, e)``; the
  image at stream position ``p`` gets a generator seeded from ``(seed, p)`` for
  its crop window and flip (``numpy_preprocess.py``). Batch ``b`` holds positions
  ``b*B .. b*B+B-1``, so every batch is a pure function of its index: the stream
  is reproducible, ``skip_batches=N`` starts it at batch N exactly as if N
  batches had been drawn (resumes), and the decode threads may finish in any order;
* evaluation (:class:`EvaluationPass`): one deterministic pass in source order,
  the last partial batch kept unless ``drop_remainder``.

Batches are float32 ``[B, S, S, 3]`` images, normalised with the ImageNet mean
and std (x255) after a clip to 0..255, and float32 one-hot labels. Keras decodes
batches in ``workers`` threads (Pillow and the larger numpy operations release
the GIL) and keeps up to ``max_queue_size`` ready (prefetch); that happens in
``fit``/``evaluate``, not when a PyDataset is indexed or iterated by hand. With
``process_count > 1`` each process makes only its contiguous rows of every global
batch of the same global stream.

A file that passed the scan but fails to decode later raises a DatasetError
naming it (``on_corrupt="error"``); with ``"skip"`` a training image is replaced
by the next decodable one of the same epoch's order and an evaluation image is
left out of its batch (a warning names it).
"""

from __future__ import annotations

import logging
import os
import threading

import keras
import numpy as np

from spnas.data import numpy_preprocess
from spnas.data.numpy_source import ArraySource, digits_source, folder_source
from spnas.data.source import DatasetError, DatasetInfo, Request, check_size, process_rows

log = logging.getLogger(__name__)

# Independent seed streams (numpy SeedSequence entropy [seed, stream, n]).
_SHUFFLE_STREAM = 1  # n = epoch: the epoch's permutation
_AUGMENT_STREAM = 2  # n = position in the stream: that image's crop and flip
_KEPT_ORDERS = 3  # epoch permutations kept (a batch may straddle two epochs)
_MAX_REPLACEMENTS = 16  # training, on_corrupt="skip": next images tried for a bad one


def default_workers() -> int:
    """Decode threads: one per CPU core, at least 2 (so decoding overlaps the step)."""
    return max(2, min(16, os.cpu_count() or 2))


def _source(r: Request, scan_workers: int) -> ArraySource:
    if r.kind == "embedded":
        return digits_source(r.split, r.validation_fraction, r.seed)
    return folder_source(
        r.arg, r.split, r.validation_fraction, r.seed, r.on_corrupt, workers=scan_workers
    )


def build(
    request: Request, workers: int | None = None, max_queue_size: int | None = None
) -> tuple[keras.utils.PyDataset, DatasetInfo]:
    """The PyDataset of a checked request (see ``spnas.data.build_dataset``).

    Args:
        request: the checked arguments (``kind`` "embedded" or "folder").
        workers: decode threads of ``fit``/``evaluate`` (default
            :func:`default_workers`).
        max_queue_size: batches decoded ahead (default ``2 * workers``).

    Returns:
        ``(dataset, info)``.
    """
    if request.kind not in ("embedded", "folder"):
        raise DatasetError(f"the numpy input has no {request.kind!r} source")
    workers = int(workers or default_workers())
    queue = int(max_queue_size or 2 * workers)
    source = _source(request, workers)
    info = source.info
    augment = request.augment or source.default_augment
    check_size(info, request.split, request.batch_size, request.drop_remainder)
    kind = TrainingStream if request.training else EvaluationPass
    dataset = kind(source, request, augment, workers=workers, max_queue_size=queue)
    log.info(
        "%s/%s: %d examples, %d classes, batch %d (process %d of %d), %dx%d, augment=%s, "
        "training=%s (numpy)",
        info.name,
        request.split,
        info.num_examples,
        info.num_classes,
        request.batch_size,
        request.process_index,
        request.process_count,
        request.image_size,
        request.image_size,
        augment,
        request.training,
    )
    return dataset, info


class _Batches(keras.utils.PyDataset):
    """What both datasets share: reading, preprocessing and assembling rows."""

    def __init__(
        self,
        source: ArraySource,
        request: Request,
        augment: str,
        *,
        workers: int,
        max_queue_size: int,
    ):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
        self.source = source
        self.request = request
        self.augment = augment
        self.info = source.info

    def _image(self, element: int, rng: np.random.Generator | None) -> np.ndarray:
        r = self.request
        return numpy_preprocess.preprocess_image(
            self.source.read(element),
            image_size=r.image_size,
            training=r.training,
            augment=self.augment,
            rng=rng,
        )

    def _assemble(self, images: list[np.ndarray], elements: list[int]) -> tuple:
        size = self.request.image_size
        x = np.stack(images) if images else np.zeros((0, size, size, 3), np.float32)
        y = numpy_preprocess.one_hot(
            self.source.labels[np.asarray(elements, np.intp)], self.info.num_classes
        )
        return numpy_preprocess.normalise(x), y


class TrainingStream(_Batches):
    """The infinite, reproducible training stream (see the module docstring).

    ``stream[i]`` is batch ``skip_batches + i`` of the global stream (this
    process's rows of it); ``element_at(p)`` is the example at stream position p.
    """

    def __init__(self, source: ArraySource, request: Request, augment: str, **kwargs):
        super().__init__(source, request, augment, **kwargs)
        self._orders: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self.rows = process_rows(request.batch_size, request.process_index, request.process_count)

    @property
    def num_batches(self) -> None:
        return None  # infinite

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The permutation of the split that epoch ``epoch`` visits."""
        with self._lock:
            order = self._orders.get(epoch)
        if order is None:
            rng = np.random.default_rng([self.request.seed, _SHUFFLE_STREAM, epoch])
            order = rng.permutation(self.info.num_examples)
            with self._lock:
                if len(self._orders) >= _KEPT_ORDERS:
                    self._orders.pop(min(self._orders))
                self._orders[epoch] = order
        return order

    def element_at(self, position: int) -> int:
        """The example index at stream position ``position``."""
        epoch, offset = divmod(position, self.info.num_examples)
        return int(self.epoch_order(epoch)[offset])

    def positions(self, index: int) -> range:
        """Stream positions of this process's rows of ``self[index]``."""
        start = (self.request.skip_batches + index) * self.request.batch_size
        return range(start + self.rows[0], start + self.rows[1])

    def _draw(self, position: int) -> tuple[int, np.ndarray]:
        rng = np.random.default_rng([self.request.seed, _AUGMENT_STREAM, position])
        element = self.element_at(position)
        try:
            return element, self._image(element, rng)
        except DatasetError as err:
            if self.request.on_corrupt == "error":
                raise
            first = err
        epoch, offset = divmod(position, self.info.num_examples)
        order = self.epoch_order(epoch)
        for k in range(1, _MAX_REPLACEMENTS + 1):
            element = int(order[(offset + k) % order.size])
            rng = np.random.default_rng([self.request.seed, _AUGMENT_STREAM, position])
            try:
                image = self._image(element, rng)
            except DatasetError:
                continue
            log.warning(
                "%s; replaced by example %d at stream position %d", first, element, position
            )
            return element, image
        raise DatasetError(f"{first}; and the next {_MAX_REPLACEMENTS} images failed too")

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index < 0:
            raise IndexError(f"a training stream has no batch {index}")
        drawn = [self._draw(p) for p in self.positions(index)]
        return self._assemble([image for _, image in drawn], [e for e, _ in drawn])


class EvaluationPass(_Batches):
    """One deterministic pass over a split, in source order (see the module docstring)."""

    def __init__(self, source: ArraySource, request: Request, augment: str, **kwargs):
        super().__init__(source, request, augment, **kwargs)
        n, b = self.info.num_examples, request.batch_size
        self._len = n // b if request.drop_remainder else -(-n // b)

    def __len__(self) -> int:
        return self._len

    @property
    def num_batches(self) -> int:
        return self._len

    def elements(self, index: int) -> range:
        """Example indices of this process's rows of ``self[index]``."""
        r = self.request
        start = index * r.batch_size
        rows = min(r.batch_size, self.info.num_examples - start)
        lo, hi = process_rows(rows, r.process_index, r.process_count)
        return range(start + lo, start + hi)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self._len:
            raise IndexError(f"batch {index} of a {self._len}-batch evaluation pass")
        images, kept = [], []
        for element in self.elements(index):
            try:
                images.append(self._image(element, None))
            except DatasetError as err:
                if self.request.on_corrupt == "error":
                    raise
                log.warning("%s; left out of the evaluation", err)
                continue
            kept.append(element)
        x, y = self._assemble(images, kept)
        multiple = int(self.request.pad_multiple)
        if multiple <= 1:
            return x, y
        return _padded(x, y, self._padded_rows(index, multiple))

    def _padded_rows(self, index: int, multiple: int) -> int:
        """The rows every process pads batch ``index`` to: its largest share, rounded
        up to a multiple of ``multiple``, so all processes send the same shape."""
        r = self.request
        rows = min(r.batch_size, self.info.num_examples - index * r.batch_size)
        largest = -(-rows // r.process_count)
        return -(-largest // multiple) * multiple


def _padded(x: np.ndarray, y: np.ndarray, rows: int) -> tuple:
    """``(x, y, weights)`` with zero rows (weight 0) appended up to ``rows``."""
    pad = rows - x.shape[0]
    weights = np.concatenate([np.ones(x.shape[0], np.float32), np.zeros(pad, np.float32)])
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    y = np.concatenate([y, np.zeros((pad, *y.shape[1:]), y.dtype)])
    return x, y, weights
