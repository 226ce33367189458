"""Per-image preprocessing in numpy: the tf.data path's (``preprocess.py``) without TensorFlow.

The same transforms with the same parameters (``preprocess_params.py``; the
MnasNet preprocessing of the paper's release, reference-facts.md "Training"):

* ``"mnasnet"``, train: TensorFlow's ``sample_distorted_bounding_box`` algorithm
  (whole-image box, minimum object covered 0.1, aspect 3/4..4/3, area
  0.08..1.0, 10 attempts), the evaluation centre crop when it returns the whole
  image, bicubic resize; eval: a centre crop of ``image_size / (image_size + 32)``
  of the shorter side, bicubic resize;
* ``"cifar"``: bilinear resize of the whole image, then in training a 4-pixel
  zero pad and a random crop of the original size;
* ``"flip"`` / ``"none"``: bilinear resize of the whole image;
* in training (all but ``"none"``) a random horizontal flip; finally a clip to
  0..255 (bicubic overshoots).

The resizes reproduce ``tf.image.resize(..., antialias=False)`` (half-pixel
centres): bilinear with TensorFlow's arithmetic, bicubic with its Keys kernel
(a = -0.5) read from the same 1024-step coefficient table, taps outside the image
given weight 0 and the rest renormalised (TF's ``resize_bicubic`` with
``half_pixel_centers``). ``tests/test_data_numpy.py`` measures the difference.

Randomness comes from a ``numpy.random.Generator`` per image (the pipeline seeds
it from the stream seed and the image's position), so results do not depend on
which thread ran first. The random draws are not TensorFlow's: the two paths draw
from the same distributions, not the same crops.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from spnas.data.preprocess_params import (
    AREA_RANGE,
    ASPECT_RATIO_RANGE,
    CIFAR_PAD,
    CROP_PADDING,
    MAX_ATTEMPTS,
    MIN_OBJECT_COVERED,
)
from spnas.space import IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB

_F32 = np.float32
KEYS_A = -0.5  # TF resize_bicubic with half_pixel_centers: Keys cubic, a = -0.5
_TABLE_SIZE = 1024  # TF resize_bicubic_op.cc kTableSize
_MEAN = np.asarray(IMAGENET_MEAN_RGB, np.float32)
_STD = np.asarray(IMAGENET_STDDEV_RGB, np.float32)
Window = tuple[int, int, int, int]  # (offset_y, offset_x, height, width)


# ------------------------------------------------------------------ crop windows


def center_crop_window(height: int, width: int, image_size: int) -> Window:
    """The MnasNet evaluation crop: image_size/(image_size+32) of the shorter side, centred."""
    ratio = _F32(image_size / (image_size + CROP_PADDING))  # TF multiplies in float32
    crop = max(int(ratio * _F32(min(height, width))), 1)  # tiny images: one pixel
    return (height - crop + 1) // 2, (width - crop + 1) // 2, crop, crop


def _random_crop(height: int, width: int, aspect: float, rng: np.random.Generator) -> Window | None:
    """One attempt of TF's GenerateRandomCrop (sample_distorted_bounding_box_op.cc)."""
    image_area = float(width * height)
    min_area, max_area = AREA_RANGE[0] * image_area, AREA_RANGE[1] * image_area
    crop_h = round(math.sqrt(min_area / aspect))
    max_h = round(math.sqrt(max_area / aspect))
    if round(max_h * aspect) > width:
        # The smallest max height with round(max_h * aspect) <= width.
        max_h = int((width + 0.5 - 1e-7) / aspect)
        if round(max_h * aspect) > width:
            max_h -= 1
    max_h = min(max_h, height)
    crop_h = min(crop_h, max_h)
    if crop_h < max_h:
        crop_h += int(rng.integers(max_h - crop_h + 1))
    crop_w = round(crop_h * aspect)
    area = float(crop_w * crop_h)
    # Rounding may leave the area just outside the range: try one size up, then down.
    if area < min_area:
        crop_h += 1
        crop_w = round(crop_h * aspect)
        area = float(crop_w * crop_h)
    if area > max_area:
        crop_h -= 1
        crop_w = round(crop_h * aspect)
        area = float(crop_w * crop_h)
    if not (min_area <= area <= max_area and 0 < crop_w <= width and 0 < crop_h <= height):
        return None
    # TF draws the offsets from [0, size - crop), so a crop smaller than the image
    # never touches its last row or column; kept to draw from the same distribution.
    y = int(rng.integers(height - crop_h)) if crop_h < height else 0
    x = int(rng.integers(width - crop_w)) if crop_w < width else 0
    return y, x, crop_h, crop_w


def random_crop_window(
    height: int, width: int, image_size: int, rng: np.random.Generator
) -> Window:
    """A MnasNet distorted-bounding-box window, or the centre crop when none is found.

    Up to ``MAX_ATTEMPTS`` windows of a random aspect ratio and area are drawn; the
    first covering at least ``MIN_OBJECT_COVERED`` of the image (the whole image is
    the one bounding box) is taken. Like TensorFlow's sampler this returns the whole
    image when every attempt fails, and like the release that whole image becomes
    the evaluation centre crop.
    """
    window = None
    lo, hi = ASPECT_RATIO_RANGE
    for _ in range(MAX_ATTEMPTS):
        aspect = float(_F32(rng.random(dtype=np.float32) * _F32(hi - lo) + _F32(lo)))
        window = _random_crop(height, width, aspect, rng)
        if window is not None and window[2] * window[3] >= MIN_OBJECT_COVERED * height * width:
            break
        window = None
    if window is None or (window[2], window[3]) == (height, width):
        return center_crop_window(height, width, image_size)
    return window


# ------------------------------------------------------------------ resizes (TF's)


def _source_positions(in_size: int, out_size: int) -> np.ndarray:
    """Half-pixel-centre sample positions in float32, as TF's HalfPixelScaler."""
    scale = _F32(in_size) / _F32(out_size)
    return (np.arange(out_size, dtype=np.float32) + _F32(0.5)) * scale - _F32(0.5)


@functools.lru_cache(maxsize=4096)
def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, float32 weight of upper) per output position."""
    pos = _source_positions(in_size, out_size)
    floor = np.floor(pos)
    lower = np.maximum(floor, 0).astype(np.intp)
    upper = np.minimum(np.ceil(pos), in_size - 1).astype(np.intp)
    return lower, upper, (pos - floor).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _keys_table() -> np.ndarray:
    """TF's coefficient table: [i, 0] = W(i/1024), [i, 1] = W(1 + i/1024), float32."""
    a = KEYS_A
    x = np.arange(_TABLE_SIZE + 1, dtype=np.float64) / _TABLE_SIZE
    x = x.astype(np.float32).astype(np.float64)  # TF stores x as float, then computes in double
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    x1 = (x + 1.0).astype(np.float32).astype(np.float64)
    far = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a
    return np.stack([near, far], axis=1).astype(np.float32)


@functools.lru_cache(maxsize=4096)
def _cubic_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices [out, 4] and float32 weights [out, 4] of TF's half-pixel bicubic."""
    pos = _source_positions(in_size, out_size)
    base = np.floor(pos)
    offset = np.rint((pos - base) * _F32(_TABLE_SIZE)).astype(np.intp)  # lrintf
    table = _keys_table()
    weights = np.stack(
        [
            table[offset, 1],
            table[offset, 0],
            table[_TABLE_SIZE - offset, 0],
            table[_TABLE_SIZE - offset, 1],
        ],
        axis=1,
    )
    index = base.astype(np.intp)[:, None] + np.arange(-1, 3)
    inside = (index >= 0) & (index < in_size)
    weights = np.where(inside, weights, _F32(0))  # taps outside the image: weight 0 ...
    total = ((weights[:, 0] + weights[:, 1]) + weights[:, 2]) + weights[:, 3]
    usable = np.abs(total) >= _F32(1000) * np.finfo(np.float32).tiny
    scale = _F32(1) / np.where(usable, total, _F32(1))
    weights = np.where(usable[:, None], weights * scale[:, None], weights)  # ... renormalised
    return np.clip(index, 0, in_size - 1), weights.astype(np.float32)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """``tf.image.resize(image, [size, size], "bilinear")`` of ``[H, W, C]``, float32."""
    image = np.asarray(image, np.float32)
    if image.shape[0] == image.shape[1] == size:
        return image  # TF's weights are then exactly (1, 0): the same values
    y0, y1, ly = _linear_taps(image.shape[0], size)
    x0, x1, lx = _linear_taps(image.shape[1], size)
    # TF computes top + (bottom - top) * ly of left + (right - left) * lx; doing the x
    # step once for every input row gives the same numbers with fewer gathers. In
    # place, to spare large temporaries (each a fresh mapping and its page faults).
    rows, right = image.take(x0, axis=1), image.take(x1, axis=1)
    right -= rows
    right *= lx[None, :, None]
    rows += right
    top, bottom = rows.take(y0, axis=0), rows.take(y1, axis=0)
    bottom -= top
    bottom *= ly[:, None, None]
    top += bottom
    return top


def _weighted_sum(
    image: np.ndarray, index: np.ndarray, weights: np.ndarray, axis: int
) -> np.ndarray:
    """sum_k take(image, index[:, k], axis) * weights[:, k], added left to right as TF."""
    shape = [1] * image.ndim
    shape[axis] = -1
    out = image.take(index[:, 0], axis=axis, mode="clip")
    out *= weights[:, 0].reshape(shape)
    term = np.empty_like(out)
    for k in range(1, index.shape[1]):
        np.take(image, index[:, k], axis=axis, out=term, mode="clip")  # unbuffered
        term *= weights[:, k].reshape(shape)
        out += term
    return out


def resize_bicubic(image: np.ndarray, size: int) -> np.ndarray:
    """``tf.image.resize(image, [size, size], "bicubic")`` of ``[H, W, C]``, float32."""
    image = np.asarray(image, np.float32)
    if image.shape[0] == image.shape[1] == size:
        return image  # TF's weights are then exactly (0, 1, 0, 0): the same values
    iy, wy = _cubic_taps(image.shape[0], size)
    ix, wx = _cubic_taps(image.shape[1], size)
    # TF interpolates along y first (per input column), then along x.
    return _weighted_sum(_weighted_sum(image, iy, wy, 0), ix, wx, 1)


# ------------------------------------------------------------------ one image


def to_rgb(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` or ``[H, W, 1]`` greyscale becomes ``[H, W, 3]``; RGB is unchanged."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image


def crop_and_resize(
    image: np.ndarray,
    *,
    image_size: int,
    training: bool,
    augment: str,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Crop and resize of one decoded ``[H, W, C]`` image (0..255) to float32
    ``[image_size, image_size, 3]``; bicubic may overshoot 0..255."""
    image = to_rgb(image)
    height, width = image.shape[:2]
    if augment == "mnasnet":
        if training:
            if rng is None:
                raise ValueError("crop_and_resize needs a generator for the random training crop")
            y, x, h, w = random_crop_window(height, width, image_size, rng)
        else:
            y, x, h, w = center_crop_window(height, width, image_size)
        return resize_bicubic(image[y : y + h, x : x + w], image_size)  # bicubic as the release
    out = resize_bilinear(image, image_size)
    if augment == "cifar" and training:
        if rng is None:
            raise ValueError("crop_and_resize needs a generator for the random training crop")
        dy, dx = (int(v) for v in rng.integers(0, 2 * CIFAR_PAD + 1, size=2))
        # A crop of the zero-padded image: the image moved by (P - dy, P - dx).
        padded = np.zeros((image_size + 2 * CIFAR_PAD,) * 2 + (3,), np.float32)
        padded[CIFAR_PAD : CIFAR_PAD + image_size, CIFAR_PAD : CIFAR_PAD + image_size] = out
        out = padded[dy : dy + image_size, dx : dx + image_size]
    return out


def preprocess_image(
    image: np.ndarray,
    *,
    image_size: int,
    training: bool,
    augment: str,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One decoded image to float32 ``[image_size, image_size, 3]`` in 0..255.

    Args:
        image: ``[H, W]`` or ``[H, W, C]`` (C = 1 or 3), values in 0..255.
        image_size: output height and width.
        training: apply the random training augmentation.
        augment: ``"mnasnet"``, ``"cifar"``, ``"flip"`` or ``"none"``.
        rng: this image's generator; required when training with augmentation.
            The crop draws first, then the flip.

    Returns:
        The preprocessed image, clipped to 0..255.
    """
    randomised = training and augment != "none"
    if randomised and rng is None:
        raise ValueError("preprocess_image needs a generator for random training augmentation")
    out = crop_and_resize(image, image_size=image_size, training=training, augment=augment, rng=rng)
    # Bicubic overshoots near edges; keep pixel values in the 0..255 range the
    # normalisation constants assume.
    out = np.clip(out, _F32(0), _F32(255))
    if randomised and rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def normalise(images: np.ndarray) -> np.ndarray:
    """ImageNet mean/std (x255) normalisation, float32, as the tf.data path (in place
    when ``images`` already is a float32 array)."""
    images = np.asarray(images, np.float32)
    images -= _MEAN
    images /= _STD
    return images


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """float32 one-hot rows of integer ``labels``."""
    labels = np.asarray(labels, np.intp)
    out = np.zeros((labels.size, num_classes), np.float32)
    out[np.arange(labels.size), labels] = 1.0
    return out
