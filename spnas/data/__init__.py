"""Input pipelines of spnas: embedded digits, image folders, TFDS, ImageNet.

``build_dataset`` returns batches of float32 images normalised with the ImageNet
mean/std (x255) of the paper's MnasNet preprocessing and one-hot float32 labels,
through tf.data or, without TensorFlow, numpy/Pillow as a ``keras.utils.PyDataset``
(``input=``); ``dataset_info`` gives a split's metadata without building anything.
Importing this package imports no TensorFlow.
"""

from spnas.data.folder_layout import list_class_images
from spnas.data.pipeline import build_dataset, dataset_info, dataset_kind, resolve_input
from spnas.data.source import INPUTS, DatasetError, DatasetInfo

__all__ = [
    "INPUTS",
    "DatasetError",
    "DatasetInfo",
    "build_dataset",
    "dataset_info",
    "dataset_kind",
    "list_class_images",
    "resolve_input",
]
