"""Per-image preprocessing: MnasNet crops, resizing and flips (TensorFlow ops).

The paper trains and searches with the MnasNet ImageNet preprocessing of its code
release (reference-facts.md, "Training"):

* train: a distorted bounding-box crop (minimum object covered 0.1, aspect ratio
  3/4..4/3, area 0.08..1.0 of the image, 10 attempts); when no window is found
  the sampler returns the whole image and the release falls back to the
  evaluation centre crop; then a bicubic resize to the target size and a random
  horizontal flip;
* eval: a centre crop of ``image_size / (image_size + 32)`` of the shorter side,
  then a bicubic resize.

JPEG bytes are decoded with ``tf.image.decode_and_crop_jpeg`` so only the crop
window is decompressed; other encodings (PNG) and decoded tensors are decoded or
sliced first. All randomness is stateless, seeded per element (crops) and per batch
(flips, applied to whole batches in the pipeline), so a training
stream is reproducible from the pipeline seed.

``"flip"`` resizes the whole image (bilinear) and flips it in training; ``"none"``
only resizes (bilinear). Output: float32 ``[image_size, image_size, 3]`` in 0..255.
"""

from __future__ import annotations

import tensorflow as tf

from spnas.data.preprocess_params import (
    AREA_RANGE,
    ASPECT_RATIO_RANGE,
    CIFAR_PAD,
    CROP_PADDING,
    MAX_ATTEMPTS,
    MIN_OBJECT_COVERED,
)


def center_crop_window(shape: tf.Tensor, image_size: int) -> tf.Tensor:
    """The MnasNet evaluation crop window ``[y, x, h, w]`` for an image of ``shape``.

    Args:
        shape: ``[height, width, ...]`` of the image (int32).
        image_size: target output size; the crop keeps image_size/(image_size+32)
            of the shorter side, centred.

    Returns:
        int32 ``[offset_y, offset_x, crop, crop]``.
    """
    height, width = shape[0], shape[1]
    ratio = image_size / (image_size + CROP_PADDING)
    crop = tf.cast(ratio * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    crop = tf.maximum(crop, 1)  # tiny images still give a one-pixel crop
    offset_y = (height - crop + 1) // 2
    offset_x = (width - crop + 1) // 2
    return tf.stack([offset_y, offset_x, crop, crop])


def random_crop_window(shape: tf.Tensor, image_size: int, seed: tf.Tensor) -> tf.Tensor:
    """A MnasNet distorted-bounding-box window ``[y, x, h, w]``, or the centre crop.

    Args:
        shape: ``[height, width, channels]`` of the image (int32).
        image_size: target size, used by the centre-crop fallback.
        seed: stateless seed, shape ``[2]``.

    Returns:
        int32 ``[offset_y, offset_x, height, width]``.
    """
    shape = tf.cast(shape, tf.int32)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=MIN_OBJECT_COVERED,
        aspect_ratio_range=ASPECT_RATIO_RANGE,
        area_range=AREA_RANGE,
        max_attempts=MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    # The sampler returns the whole image when all attempts fail; the release then
    # uses the evaluation centre crop instead of training on the uncropped image.
    failed = tf.logical_and(tf.equal(size[0], shape[0]), tf.equal(size[1], shape[1]))
    return tf.cond(failed, lambda: center_crop_window(shape, image_size), lambda: window)


def decode_full(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes JPEG/PNG/GIF/BMP bytes to uint8 ``[H, W, 3]``."""
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def _slice(image: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    return tf.slice(image, [window[0], window[1], 0], [window[2], window[3], -1])


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
    """Decoded tensors may be greyscale ``[H, W, 1]``; the network wants 3 channels."""
    if image.shape.rank == 3 and image.shape[-1] == 1:
        return tf.tile(image, [1, 1, 3])
    return image


def _crop(image: tf.Tensor, encoded: bool, window_fn) -> tf.Tensor:
    """Crops ``image`` to ``window_fn(shape)``; decodes only the window of a JPEG."""
    if not encoded:
        image = _to_rgb(image)
        return _slice(image, window_fn(tf.shape(image)))

    def jpeg():
        window = window_fn(tf.image.extract_jpeg_shape(image))
        return tf.image.decode_and_crop_jpeg(image, window, channels=3)

    def other():
        decoded = decode_full(image)
        return _slice(decoded, window_fn(tf.shape(decoded)))

    return tf.cond(tf.io.is_jpeg(image), jpeg, other)


def _resize(image: tf.Tensor, image_size: int, method: str) -> tf.Tensor:
    resized = tf.image.resize(image, [image_size, image_size], method=method)
    return tf.ensure_shape(tf.cast(resized, tf.float32), [image_size, image_size, 3])


def crop_and_resize(
    image: tf.Tensor,
    *,
    image_size: int,
    training: bool,
    augment: str,
    encoded: bool,
    seed: tf.Tensor | None = None,
) -> tf.Tensor:
    """The per-image part of preprocessing: decode, crop and resize.

    Flipping and clipping are left to :func:`finish_images`, which runs on whole
    batches: per-element ``tf.data`` work has a fixed cost per op, which for
    32x32 images is larger than the work itself.

    Args:
        image: scalar string of encoded bytes (``encoded=True``) or a decoded
            ``[H, W, C]`` tensor (C = 1 or 3) with values in 0..255.
        image_size: output height and width.
        training: use the random crop (``augment="mnasnet"`` or ``"cifar"``).
        augment: ``"mnasnet"``, ``"cifar"``, ``"flip"`` or ``"none"``.
        encoded: whether ``image`` holds encoded bytes.
        seed: stateless seed ``[2]`` of the random crop (training with mnasnet/cifar).

    Returns:
        float32 ``[image_size, image_size, 3]``; bicubic resizing may overshoot 0..255.
    """
    if augment == "mnasnet":
        if training:
            if seed is None:
                raise ValueError("crop_and_resize needs a seed for the random training crop")
            out = _crop(image, encoded, lambda s: random_crop_window(s, image_size, seed))
        else:
            out = _crop(image, encoded, lambda s: center_crop_window(s, image_size))
        return _resize(out, image_size, "bicubic")  # bicubic as in the release
    out = decode_full(image) if encoded else _to_rgb(image)
    out = _resize(out, image_size, "bilinear")
    if augment == "cifar" and training:
        if seed is None:
            raise ValueError("crop_and_resize needs a seed for the random training crop")
        padded = tf.pad(out, [[CIFAR_PAD, CIFAR_PAD], [CIFAR_PAD, CIFAR_PAD], [0, 0]])
        out = tf.image.stateless_random_crop(padded, [image_size, image_size, 3], seed)
    return out


def finish_images(
    images: tf.Tensor,
    *,
    training: bool,
    augment: str,
    seed: tf.Tensor | None = None,
    rows: tuple[int, int] | None = None,
) -> tf.Tensor:
    """Clips to 0..255 and, when training with augmentation, flips images at random.

    Args:
        images: float32 ``[B, S, S, 3]`` from :func:`crop_and_resize`.
        training: apply the random horizontal flip.
        augment: ``"mnasnet"``, ``"cifar"``, ``"flip"`` or ``"none"`` (no flip).
        seed: stateless seed ``[2]`` of this batch's flips (training only).
        rows: ``(first row, global batch size)`` when ``images`` are one process's
            rows of a larger global batch: the flips are drawn for the global
            batch and this share's are used, so every process flips as one would.

    Returns:
        The images, each flipped left-right with probability 1/2.
    """
    # Bicubic overshoots near edges; keep pixel values in the 0..255 range the
    # normalisation constants assume.
    images = tf.clip_by_value(images, 0.0, 255.0)
    if not training or augment == "none":
        return images
    if seed is None:
        raise ValueError("finish_images needs a seed for the random flip")
    if rows is None:
        flip = tf.random.stateless_uniform(tf.shape(images)[:1], seed) < 0.5
    else:
        first, total = rows
        draws = tf.random.stateless_uniform([total], seed)
        flip = draws[first : first + tf.shape(images)[0]] < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


def preprocess_image(
    image: tf.Tensor,
    *,
    image_size: int,
    training: bool,
    augment: str,
    encoded: bool,
    seed: tf.Tensor | None = None,
) -> tf.Tensor:
    """Turns one raw image into a float32 ``[image_size, image_size, 3]`` in 0..255.

    The pipeline runs the same two steps, :func:`crop_and_resize` per element and
    :func:`finish_images` per batch; this is the single-image composition.

    Args:
        image: scalar string of encoded bytes (``encoded=True``) or a decoded
            ``[H, W, C]`` tensor (C = 1 or 3) with values in 0..255.
        image_size: output height and width.
        training: apply the random training augmentation.
        augment: ``"mnasnet"``, ``"cifar"``, ``"flip"`` or ``"none"``.
        encoded: whether ``image`` holds encoded bytes.
        seed: stateless seed ``[2]``; required when training with augmentation.

    Returns:
        The preprocessed image.
    """
    randomised = training and augment != "none"
    if randomised and seed is None:
        raise ValueError("preprocess_image needs a seed for random training augmentation")
    crop_seed = flip_seed = None
    if randomised:
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    out = crop_and_resize(
        image,
        image_size=image_size,
        training=training,
        augment=augment,
        encoded=encoded,
        seed=crop_seed,
    )
    return finish_images(out[None], training=training, augment=augment, seed=flip_seed)[0]
