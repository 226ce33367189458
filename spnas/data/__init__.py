"""Input pipelines of spnas (tf.data): embedded digits, image folders, TFDS, ImageNet.

``build_dataset`` returns batches of float32 images normalised with the ImageNet
mean/std (x255) of the paper's MnasNet preprocessing and one-hot float32 labels;
``dataset_info`` gives a split's metadata without building anything.
"""

from spnas.data.pipeline import build_dataset, dataset_info
from spnas.data.source import DatasetError, DatasetInfo

__all__ = ["DatasetError", "DatasetInfo", "build_dataset", "dataset_info"]
