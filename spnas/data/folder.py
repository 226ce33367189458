"""Image folders (``folder_layout.py``) as a tf.data :class:`Source`.

Files are checked once for corruption (``folder_scan.py``); ``on_corrupt="error"``
raises a DatasetError naming the files, ``"skip"`` drops them and counts them.
"""

from __future__ import annotations

import tensorflow as tf

from spnas.data.folder_layout import DEFAULT_AUGMENT, drop_corrupt, scanned_info, split_files
from spnas.data.folder_scan import scan_files
from spnas.data.source import Source


def folder_source(
    root: str, split: str, validation_fraction: float, seed: int, on_corrupt: str
) -> Source:
    """A folder split as a Source of (path, label); files are read in the pipeline."""
    name, class_names, paths, labels = split_files(root, split, validation_fraction, seed)
    scan = scan_files(paths)
    paths, labels = drop_corrupt(name, split, paths, labels, scan.corrupt, on_corrupt)
    info = scanned_info(name, split, class_names, len(paths), scan.image_size,
                        len(scan.corrupt))
    return Source(
        info=info,
        elements=tf.data.Dataset.from_tensor_slices((paths, labels)),
        load=lambda path, label: (tf.io.read_file(path), label),
        encoded=True,
        default_augment=DEFAULT_AUGMENT,
        shuffle_buffer=len(paths),  # elements are path strings: shuffle them all
    )
