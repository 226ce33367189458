"""Image-folder datasets without decoding: layout, listing, splits, corrupt-file policy.

``folder:<root>`` with ImageNet-style folders (as written by most download scripts)::

    root/train/<class>/*.{jpg,jpeg,png}
    root/validation/<class>/...   (or root/val/<class>/...; optional)

Class names are the sorted sub-directories of ``train/``; the label of a class is
its index in that order. Without a validation directory, ``validation_fraction``
of each class of ``train/`` is held out deterministically (``splits.py``). No
TensorFlow here: both input paths (``folder.py`` for tf.data, ``numpy_source.py``)
list folders with this module and apply the same ``on_corrupt`` policy after
their own scan (``folder_scan.py``, ``pil_scan.py``).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from spnas.data.source import DatasetError, DatasetInfo
from spnas.data.splits import stratified_split
from spnas.fileio import check_input_dir

log = logging.getLogger(__name__)

PREFIX = "folder:"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
VALIDATION_DIRS = ("validation", "val")
DEFAULT_AUGMENT = "mnasnet"
_MAX_LISTED = 5  # corrupt files named in an error message


def _visible_dirs(path: str) -> list[str]:
    try:
        entries = list(os.scandir(path))
    except OSError as err:
        raise DatasetError(f"image folder directory {path} cannot be listed: "
                           f"{err.strerror or err}") from None
    return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _image_files(class_dir: str) -> list[str]:
    """Image files under ``class_dir`` (recursively), sorted; hidden files ignored.

    Symbolic links to directories are followed, each directory once (a link
    back up the tree would otherwise list the same files again at every level).
    """

    def unreadable(err: OSError) -> None:
        raise DatasetError(f"image folder directory {err.filename} cannot be listed: "
                           f"{err.strerror or err}")

    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(class_dir, onerror=unreadable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(dirpath, name))
    return sorted(found)


def list_class_images(split_dir: str) -> dict[str, list[str]]:
    """The class directories of one split directory and the image files of each.

    Args:
        split_dir: a directory of ``<class>/`` sub-directories (``root/train``).

    Returns:
        ``{class name: sorted image paths}`` in sorted class order (the label
        order); hidden files and directories are ignored, class directories are
        searched recursively for ``.jpg``/``.jpeg``/``.png`` files.
    """
    return {name: _image_files(os.path.join(split_dir, name)) for name in _visible_dirs(split_dir)}


def _layout(root: str) -> tuple[str, str, str | None]:
    """Resolves ``root`` and returns (root, train dir, validation dir or None)."""
    if not root:
        raise DatasetError(f'"{PREFIX}" needs a directory: "{PREFIX}/path/to/root"')
    root = os.path.abspath(os.path.expanduser(root))
    try:
        check_input_dir(root, "image folder root", DatasetError)
    except FileNotFoundError as err:
        raise DatasetError(f"{err} Expected {root}/train/<class>/*.jpg") from None
    except PermissionError as err:
        raise DatasetError(str(err)) from None
    train_dir = os.path.join(root, "train")
    if os.path.lexists(train_dir) and not os.path.isdir(train_dir):
        raise DatasetError(f"image folder {root}: {train_dir} is a file, not a directory of "
                           "<class>/ sub-directories")
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
    for name, files in list_class_images(split_dir).items():
        if name not in index:
            raise DatasetError(
                f"{split_dir}/{name} is not a class of the training set "
                f"({len(class_names)} classes from train/)"
            )
        paths.extend(files)
        labels.extend([index[name]] * len(files))
    return paths, np.asarray(labels, dtype=np.int32)


def split_files(
    root: str, split: str, validation_fraction: float, seed: int
) -> tuple[str, list[str], list[str], np.ndarray]:
    """Returns (canonical name, class names, paths, int32 labels) of one split."""
    root, train_dir, val_dir = _layout(root)
    class_names = _visible_dirs(train_dir)
    if not class_names:
        raise DatasetError(f"image folder {train_dir} has no class sub-directories "
                           "(<class>/*.jpg)")
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
    if len(class_names) < 2:
        raise DatasetError(f"image folder {train_dir} has one class sub-directory "
                           f"({class_names[0]!r}); a classifier needs at least two classes")
    return f"{PREFIX}{root}", class_names, paths, labels


def folder_info(root: str, split: str, validation_fraction: float, seed: int) -> DatasetInfo:
    """Metadata from the directory listing alone (no decoding, so ``skipped`` is 0
    and ``image_size`` is None; ``build_dataset`` reports both after its scan)."""
    name, class_names, paths, _ = split_files(root, split, validation_fraction, seed)
    return DatasetInfo(
        name=name,
        split=split,
        num_classes=len(class_names),
        num_examples=len(paths),
        image_size=None,
        class_names=tuple(class_names),
    )


def drop_corrupt(
    name: str,
    split: str,
    paths: list[str],
    labels: np.ndarray,
    corrupt: dict[str, str],
    on_corrupt: str,
) -> tuple[list[str], np.ndarray]:
    """Applies ``on_corrupt`` to a scan's ``{path: reason}``: raises a DatasetError
    naming the files (``"error"``) or logs them and drops them (``"skip"``)."""
    if corrupt:
        # One line (the command-line tools print an error as one line): the first
        # files with their reasons, then how many more.
        listed = "; ".join(f"{p} ({r})" for p, r in list(corrupt.items())[:_MAX_LISTED])
        more = len(corrupt) - _MAX_LISTED
        listed += f"; ... and {more} more" if more > 0 else ""
        if on_corrupt == "error":
            raise DatasetError(
                f"{len(corrupt)} corrupt or unreadable image file(s) in {name} "
                f"split {split!r}: {listed}. "
                'Remove or replace them, or pass on_corrupt="skip" to skip them.'
            )
        log.warning(
            "skipping %d corrupt or unreadable image file(s) in %s split %r: %s",
            len(corrupt),
            name,
            split,
            listed,
        )
        keep = [i for i, p in enumerate(paths) if p not in corrupt]
        paths, labels = [paths[i] for i in keep], labels[keep]
    if not paths:
        raise DatasetError(f"every image file of {name} split {split!r} is corrupt or "
                           f"unreadable ({len(corrupt)} files, e.g. {next(iter(corrupt), '?')})")
    return paths, labels


def scanned_info(name: str, split: str, class_names: list[str], num_examples: int,
                 image_size: int | None, skipped: int) -> DatasetInfo:
    """The info of a folder split after its corruption scan (either scanner)."""
    return DatasetInfo(name=name, split=split, num_classes=len(class_names),
                       num_examples=num_examples, image_size=image_size,
                       class_names=tuple(class_names), skipped=skipped)
