"""Image-folder datasets: ``folder:<root>`` with ``<root>/<split>/<class>/*.jpg``.

Layout (ImageNet-style, as written by most download scripts)::

    root/train/<class>/*.{jpg,jpeg,png}
    root/validation/<class>/...   (or root/val/<class>/...; optional)

Class names are the sorted sub-directories of ``train/``; the label of a class is
its index in that order. Without a validation directory, ``validation_fraction``
of each class of ``train/`` is held out deterministically (``splits.py``). Files
are checked once for corruption (``folder_scan.py``); ``on_corrupt="error"``
raises a DatasetError naming the files, ``"skip"`` drops them and counts them.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from spnas.data.folder_scan import scan_files
from spnas.data.source import DatasetError, DatasetInfo, Source
from spnas.data.splits import stratified_split

log = logging.getLogger(__name__)

PREFIX = "folder:"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
VALIDATION_DIRS = ("validation", "val")
_MAX_LISTED = 5  # corrupt files named in an error message


def _visible_dirs(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _image_files(class_dir: str) -> list[str]:
    """Image files under ``class_dir`` (recursively), sorted; hidden files ignored."""
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(dirpath, name))
    return sorted(found)


def _layout(root: str) -> tuple[str, str, str | None]:
    """Resolves ``root`` and returns (root, train dir, validation dir or None)."""
    if not root:
        raise DatasetError(f'"{PREFIX}" needs a directory: "{PREFIX}/path/to/root"')
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DatasetError(f"image folder root {root} does not exist or is not a directory")
    train_dir = os.path.join(root, "train")
    if not os.path.isdir(train_dir):
        raise DatasetError(
            f"image folder {root} has no train/ directory; expected "
            f"{root}/train/<class>/*.jpg (and optionally {root}/validation/<class>/*.jpg)"
        )
    val_dir = next(
        (os.path.join(root, d) for d in VALIDATION_DIRS if os.path.isdir(os.path.join(root, d))),
        None,
    )
    return root, train_dir, val_dir


def _list_dir(split_dir: str, class_names: list[str]) -> tuple[list[str], np.ndarray]:
    """All image paths of a split directory and their labels (index in class_names)."""
    index = {name: i for i, name in enumerate(class_names)}
    paths, labels = [], []
    for name in _visible_dirs(split_dir):
        if name not in index:
            raise DatasetError(
                f"{split_dir}/{name} is not a class of the training set "
                f"({len(class_names)} classes from train/)"
            )
        files = _image_files(os.path.join(split_dir, name))
        paths.extend(files)
        labels.extend([index[name]] * len(files))
    return paths, np.asarray(labels, dtype=np.int32)


def _split_files(
    root: str, split: str, validation_fraction: float, seed: int
) -> tuple[str, list[str], list[str], np.ndarray]:
    """Returns (canonical name, class names, paths, labels) of one split."""
    root, train_dir, val_dir = _layout(root)
    class_names = _visible_dirs(train_dir)
    if not class_names:
        raise DatasetError(f"{train_dir} has no class sub-directories (<class>/*.jpg)")
    if split == "validation" and val_dir is not None:
        paths, labels = _list_dir(val_dir, class_names)
    else:
        paths, labels = _list_dir(train_dir, class_names)
        if val_dir is None:
            train_idx, val_idx = stratified_split(labels, validation_fraction, seed, class_names)
            keep = train_idx if split == "train" else val_idx
            paths, labels = [paths[i] for i in keep], labels[keep]
    if not paths:
        where = val_dir if (split == "validation" and val_dir) else train_dir
        detail = (
            f" (no validation directory and validation_fraction={validation_fraction})"
            if split == "validation" and val_dir is None
            else ""
        )
        raise DatasetError(
            f"no {'/'.join(IMAGE_EXTENSIONS)} images for split {split!r} under {where}{detail}"
        )
    return f"{PREFIX}{root}", class_names, paths, labels


def folder_info(root: str, split: str, validation_fraction: float, seed: int) -> DatasetInfo:
    """Metadata from the directory listing alone (no decoding, so ``skipped`` is 0
    and ``image_size`` is None; ``build_dataset`` reports both after its scan)."""
    name, class_names, paths, _ = _split_files(root, split, validation_fraction, seed)
    return DatasetInfo(
        name=name,
        split=split,
        num_classes=len(class_names),
        num_examples=len(paths),
        image_size=None,
        class_names=tuple(class_names),
    )


def folder_source(
    root: str, split: str, validation_fraction: float, seed: int, on_corrupt: str
) -> Source:
    """A folder split as a Source of (path, label); files are read in the pipeline."""
    name, class_names, paths, labels = _split_files(root, split, validation_fraction, seed)
    scan = scan_files(paths)
    if scan.corrupt:
        listed = "\n  ".join(f"{p}: {r}" for p, r in list(scan.corrupt.items())[:_MAX_LISTED])
        more = len(scan.corrupt) - _MAX_LISTED
        listed += f"\n  ... and {more} more" if more > 0 else ""
        if on_corrupt == "error":
            raise DatasetError(
                f"{len(scan.corrupt)} corrupt or unreadable image file(s) in {name} "
                f"split {split!r}:\n  {listed}\n"
                'Remove or replace them, or pass on_corrupt="skip" to skip them.'
            )
        log.warning(
            "skipping %d corrupt or unreadable image file(s) in %s split %r:\n  %s",
            len(scan.corrupt),
            name,
            split,
            listed,
        )
        keep = [i for i, p in enumerate(paths) if p not in scan.corrupt]
        paths, labels = [paths[i] for i in keep], labels[keep]
    if not paths:
        raise DatasetError(f"every image file of {name} split {split!r} is corrupt")

    info = DatasetInfo(
        name=name,
        split=split,
        num_classes=len(class_names),
        num_examples=len(paths),
        image_size=scan.image_size,
        class_names=tuple(class_names),
        skipped=len(scan.corrupt),
    )
    return Source(
        info=info,
        elements=tf.data.Dataset.from_tensor_slices((paths, labels)),
        load=lambda path, label: (tf.io.read_file(path), label),
        encoded=True,
        default_augment="mnasnet",
        shuffle_buffer=len(paths),  # elements are path strings: shuffle them all
    )
