"""The parameters of the paper's preprocessing, shared by the tf.data path
(``preprocess.py``) and the numpy path (``numpy_preprocess.py``). No TensorFlow here.

MnasNet's ImageNet preprocessing as used by the Single-Path NAS release
(reference-facts.md, "Training"), and the common CIFAR-10 augmentation.
"""

from __future__ import annotations

CROP_PADDING = 32  # MnasNet preprocessing: eval crop = size / (size + 32)
MIN_OBJECT_COVERED = 0.1  # MnasNet distorted_bounding_box_crop
ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
AREA_RANGE = (0.08, 1.0)
MAX_ATTEMPTS = 10
# CIFAR augmentation (He et al. 2016, Sec. 4.2; the common CIFAR-10 recipe): pad 4
# pixels on each side with zeros, take a random crop of the original size, flip.
CIFAR_PAD = 4
