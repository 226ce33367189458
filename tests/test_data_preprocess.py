"""Tests of the MnasNet preprocessing (spnas.data.preprocess) on real CIFAR-10 JPEGs."""

import tarfile

import numpy as np
import pytest
import tensorflow as tf

from spnas.data.preprocess import (
    center_crop_window,
    preprocess_image,
    random_crop_window,
)


@pytest.fixture(scope="module")
def jpegs(shared_dir):
    """The first eight JPEG files of the CIFAR-10 tarball, as bytes."""
    found = []
    with tarfile.open(shared_dir / "data" / "cifar10_train_jpg.tar.gz") as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".jpg"):
                found.append(archive.extractfile(member).read())
                if len(found) == 8:
                    break
    return found


def _seed(i):
    return tf.constant([7, i], tf.int64)


@pytest.mark.parametrize("size", [32, 64, 224])
@pytest.mark.parametrize("training", [True, False])
def test_mnasnet_output_size_jpeg_png_and_tensor(jpegs, size, training):
    decoded = tf.io.decode_jpeg(jpegs[0])
    inputs = [
        (tf.constant(jpegs[0]), True),
        (tf.io.encode_png(decoded), True),
        (decoded, False),
        (tf.cast(decoded[..., :1], tf.float32), False),  # greyscale tensors become RGB
    ]
    for image, encoded in inputs:
        out = preprocess_image(
            image,
            image_size=size,
            training=training,
            augment="mnasnet",
            encoded=encoded,
            seed=_seed(0),
        )
        assert out.shape == (size, size, 3) and out.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0


def test_eval_center_crop_matches_reference_formula(jpegs):
    """Eval keeps image_size/(image_size+32) of the shorter side, centred, then bicubic."""
    image = tf.io.decode_jpeg(jpegs[1])  # 32x32
    big = tf.cast(tf.image.resize(image, [100, 60]), tf.uint8)  # non-square, non-JPEG
    window = center_crop_window(tf.shape(big), 224).numpy()
    crop = int(224 / 256 * 60)  # = 52
    np.testing.assert_array_equal(window, [(100 - crop + 1) // 2, (60 - crop + 1) // 2, crop, crop])
    out = preprocess_image(big, image_size=224, training=False, augment="mnasnet", encoded=False)
    y, x = window[:2]
    expected = tf.image.resize(big[y : y + crop, x : x + crop], [224, 224], method="bicubic")
    np.testing.assert_allclose(out.numpy(), np.clip(expected.numpy(), 0, 255), atol=1e-3)
    # On the JPEG bytes themselves (decode_and_crop_jpeg) the result equals decode + slice
    # up to libjpeg's chroma upsampling at the window edge.
    from_bytes = preprocess_image(
        tf.constant(jpegs[1]), image_size=32, training=False, augment="mnasnet", encoded=True
    )
    from_tensor = preprocess_image(
        image, image_size=32, training=False, augment="mnasnet", encoded=False
    )
    diff = np.abs(from_bytes.numpy() - from_tensor.numpy())
    assert diff.max() < 8.0 and diff.mean() < 0.5


def test_random_crop_windows_follow_mnasnet_ranges(jpegs):
    shape = tf.constant([224, 224, 3])
    areas, fallbacks = [], 0
    centre = center_crop_window(shape, 224).numpy()
    for i in range(200):
        y, x, h, w = random_crop_window(shape, 224, _seed(i)).numpy()
        assert 0 <= y and 0 <= x and y + h <= 224 and x + w <= 224
        if (y, x, h, w) == tuple(centre):
            fallbacks += 1
            continue
        areas.append(h * w / 224**2)
        assert 0.7 <= w / h <= 1.45  # 3/4..4/3 up to integer rounding
    assert 0.08 - 0.01 <= min(areas) and max(areas) <= 1.0  # reference facts: area 0.08-1.0
    # ... and the whole range is used: ~190 seeded draws over [0.08, 1] reach close to both ends.
    assert min(areas) < 0.12 and max(areas) > 0.9, (min(areas), max(areas))
    assert np.std(areas) > 0.1 and fallbacks < 50  # varied crops, few fallbacks
    # Same seed, same crop and flip; another seed, another one.
    image = tf.constant(jpegs[2])
    a, b, c = (
        preprocess_image(
            image, image_size=32, training=True, augment="mnasnet", encoded=True, seed=s
        )
        for s in (_seed(1), _seed(1), _seed(2))
    )
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


def test_tiny_image_falls_back_to_centre_crop():
    image = tf.fill([1, 1, 3], tf.constant(200, tf.uint8))
    window = random_crop_window(tf.shape(image), 32, _seed(0)).numpy()
    np.testing.assert_array_equal(window, [0, 0, 1, 1])
    out = preprocess_image(
        image, image_size=32, training=True, augment="mnasnet", encoded=False, seed=_seed(0)
    )
    np.testing.assert_allclose(out.numpy(), 200.0, atol=1e-3)


def test_flip_and_none(jpegs):
    image = tf.io.decode_jpeg(jpegs[3])
    none = preprocess_image(image, image_size=32, training=True, augment="none", encoded=False)
    np.testing.assert_allclose(none.numpy(), image.numpy().astype(np.float32), atol=1e-4)
    flips = {
        preprocess_image(
            image, image_size=32, training=True, augment="flip", encoded=False, seed=_seed(i)
        )
        .numpy()
        .tobytes()
        for i in range(16)
    }
    mirrored = image.numpy()[:, ::-1].astype(np.float32).tobytes()
    assert flips == {image.numpy().astype(np.float32).tobytes(), mirrored}
    with pytest.raises(ValueError, match="seed"):
        preprocess_image(image, image_size=32, training=True, augment="flip", encoded=False)


def test_cifar_augment_is_a_padded_random_crop_and_a_flip(jpegs):
    """``augment="cifar"``: 4-pixel zero pad, a random 32x32 window of the padded
    image, then a horizontal flip with probability 1/2; evaluation leaves the image."""
    image = tf.io.decode_jpeg(jpegs[2])
    raw = image.numpy().astype(np.float32)
    padded = np.pad(raw, [(4, 4), (4, 4), (0, 0)])
    windows = {(dy, dx): padded[dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)}
    seen, flipped = set(), 0
    for i in range(40):
        out = preprocess_image(image, image_size=32, training=True, augment="cifar",
                               encoded=False, seed=_seed(i)).numpy()
        assert out.shape == (32, 32, 3)
        match = [k for k, w in windows.items() if np.allclose(out, w, atol=1e-4)]
        match_flip = [k for k, w in windows.items() if np.allclose(out, w[:, ::-1], atol=1e-4)]
        assert match or match_flip, i
        flipped += bool(match_flip) and not match
        seen.update(match or match_flip)
    assert len(seen) > 10  # many offsets, not one
    assert 5 < flipped < 35
    again = preprocess_image(image, image_size=32, training=True, augment="cifar", encoded=False,
                             seed=_seed(3)).numpy()
    first = preprocess_image(image, image_size=32, training=True, augment="cifar", encoded=False,
                             seed=_seed(3)).numpy()
    np.testing.assert_array_equal(again, first)
    evaluated = preprocess_image(image, image_size=32, training=False, augment="cifar",
                                 encoded=False).numpy()
    np.testing.assert_allclose(evaluated, raw, atol=1e-4)
