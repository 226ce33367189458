"""Input throughput: the tf.data pipeline vs the numpy/Pillow PyDataset (training streams).

Both paths of ``spnas.data.build_dataset`` (``input="tf"`` and ``input="numpy"``)
produce the same training stream of a folder of real JPEGs (shuffled, cropped,
flipped, normalised, one-hot), here in images per second on this machine:

* ``cifar32``: real CIFAR-10 training JPEGs (32x32), output 32 px;
* ``upscaled224``: the same kind of real CIFAR-10 images, upscaled by Pillow
  (bicubic) to 224x224 and re-encoded as JPEG (quality 90): a stand-in for
  ImageNet-sized decoding and resizing, not real ImageNet photos (those are
  ~400x350 and carry more detail, so they decode somewhat slower);

each with the ``mnasnet`` and the ``cifar`` training augmentation. The tf.data
stream is read with ``as_numpy_iterator`` (Keras on JAX converts it so too); the
PyDataset through Keras's own PyDataset adapter (its thread pool of ``workers``
and its queue of ``max_queue_size`` batches, as ``fit`` reads it). Repetitions
interleave the two paths (tf, numpy, numpy, tf, ...), each on a freshly built
stream after a warm-up; the result is the median over repetitions and the ratio
numpy / tf. Folder scans (TensorFlow and Pillow) are timed once, uncached.

``--grain`` adds two more paths, if the ``grain`` package is installed (it is not a
dependency of spnas): the same numpy transforms (``spnas.data.numpy_preprocess``,
Pillow decoding) driven by grain's ``MapDataset`` with ``ReadOptions`` threads
(``grain_threads``) or ``mp_prefetch`` worker processes (``grain_processes``),
as many as the PyDataset's threads.

    python bench/input_throughput.py --grain --json=bench/results/input_throughput_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import statistics
import sys
import tarfile
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FORMAT = "spnas.bench.input_throughput/1"
TARBALL = REPO.parent / "shared" / "data" / "cifar10_train_jpg.tar.gz"
SETTINGS = (("cifar32", 32, "cifar"), ("cifar32", 32, "mnasnet"),
            ("upscaled224", 224, "cifar"), ("upscaled224", 224, "mnasnet"))


def extract(tarball: pathlib.Path, dest: pathlib.Path, per_class: int) -> pathlib.Path:
    """The first ``per_class`` JPEGs of each class into dest/train/<class>/."""
    counts: dict[str, int] = {}
    with tarfile.open(tarball) as archive:
        for member in archive:
            if not member.isfile():
                continue
            cls = member.name.split("/")[1]
            if counts.get(cls, 0) >= per_class:
                continue
            counts[cls] = counts.get(cls, 0) + 1
            target = dest / "train" / cls / os.path.basename(member.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.extractfile(member).read())
            if len(counts) == 10 and min(counts.values()) >= per_class:
                break
    return dest


def upscale(src: pathlib.Path, dest: pathlib.Path, per_class: int, size: int) -> pathlib.Path:
    """``per_class`` images of each class of ``src``, upscaled to size x size JPEGs."""
    from PIL import Image

    for cls_dir in sorted((src / "train").iterdir()):
        out = dest / "train" / cls_dir.name
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(cls_dir.glob("*.jpg"))[:per_class]:
            with Image.open(path) as image:
                big = image.convert("RGB").resize((size, size), Image.BICUBIC)
            big.save(out / path.name, quality=90)
    return dest


def _tf_rate(ds, warmup: int, batches: int) -> float:
    it = ds.as_numpy_iterator()
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    rows = sum(len(next(it)[0]) for _ in range(batches))
    return rows / (time.perf_counter() - t0)


def _numpy_rate(ds, warmup: int, batches: int) -> float:
    # Keras's adapter is what fit() uses to read a PyDataset (threads + queue); it is
    # private API, used here only to measure the same thing fit() sees.
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(ds)
    it = adapter.get_numpy_iterator()
    try:
        for _ in range(warmup):
            next(it)
        t0 = time.perf_counter()
        rows = sum(len(next(it)[0]) for _ in range(batches))
        return rows / (time.perf_counter() - t0)
    finally:
        adapter.on_epoch_end()  # stops the enqueuer's threads


class _GrainExample:
    """grain: one stream element -> (preprocessed image, label), spnas's numpy transforms."""

    def __init__(self, paths, labels, image_size: int, augment: str):
        self.paths, self.labels = paths, labels
        self.image_size, self.augment = image_size, augment

    def __call__(self, index, rng):
        from spnas.data.numpy_preprocess import preprocess_image
        from spnas.data.numpy_source import read_image

        image = preprocess_image(read_image(self.paths[index]), image_size=self.image_size,
                                 training=True, augment=self.augment, rng=rng)
        return image, self.labels[index]


class _GrainFinish:
    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def __call__(self, batch):
        from spnas.data.numpy_preprocess import normalise, one_hot

        images, labels = batch
        return normalise(images), one_hot(labels, self.num_classes)


def _grain_stream(root, image_size: int, augment: str, batch: int, seed: int, workers: int,
                  processes: bool):
    """The same training stream through grain (threads, or worker processes)."""
    import grain
    from absl import flags

    from spnas.data.folder_layout import split_files

    if not flags.FLAGS.is_parsed():  # grain reads absl flags (defaults are fine)
        flags.FLAGS.mark_as_parsed()

    _, classes, paths, labels = split_files(str(root), "train", 0.1, 0)
    ds = (grain.MapDataset.range(len(paths)).shuffle(seed=seed).repeat()
          .random_map(_GrainExample(paths, labels, image_size, augment), seed=seed)
          .batch(batch, drop_remainder=True).map(_GrainFinish(len(classes))))
    if processes:
        return ds.to_iter_dataset().mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=workers, prefetch_buffer_size=4 * batch))


def _iter_rate(stream, warmup: int, batches: int) -> float:
    it = iter(stream)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    rows = sum(len(next(it)[0]) for _ in range(batches))
    return rows / (time.perf_counter() - t0)


def measure(folders: dict, reps: int, batch: int, warmup: int, batches: dict,
            paths: tuple[str, ...]) -> list[dict]:
    from spnas.data import build_dataset
    from spnas.data.numpy_pipeline import default_workers

    rows = []
    for name, size, augment in SETTINGS:
        rows.append({"dataset": name, "image_size": size, "augment": augment, "batch": batch,
                     "batches": batches[size], **{path: [] for path in paths}})
    for rep in range(reps):
        order = paths if rep % 2 == 0 else paths[::-1]
        for row in rows:
            root, size, augment = folders[row["dataset"]], row["image_size"], row["augment"]
            for path in order:
                if path.startswith("grain"):
                    stream = _grain_stream(root, size, augment, batch, rep, default_workers(),
                                           processes=path == "grain_processes")
                    rate = _iter_rate(stream, warmup, row["batches"])
                else:
                    ds, _ = build_dataset(f"folder:{root}", "train", batch, size, True,
                                          augment=augment, input=path, seed=rep)
                    measure_fn = _tf_rate if path == "tf" else _numpy_rate
                    rate = measure_fn(ds, warmup, row["batches"])
                row[path].append(round(rate, 1))
                print(f"rep {rep}: {row['dataset']} {augment:7s} {path:15s} "
                      f"{rate:8.0f} images/s", flush=True)
    for row in rows:
        for path in paths:
            row[f"{path}_median"] = statistics.median(row[path])
        for path in paths[1:]:
            row[f"ratio_{path}_over_tf"] = round(row[f"{path}_median"] / row["tf_median"], 3)
    return rows


def scan_times(folders: dict) -> dict:
    """Seconds of the first (uncached) corruption scan of each folder, per scanner."""
    from spnas.data import folder_scan, pil_scan
    from spnas.data.folder_layout import split_files

    out = {}
    for name, root in folders.items():
        _, _, paths, _ = split_files(str(root), "train", 0.1, 0)
        t0 = time.perf_counter()
        folder_scan.scan_files(paths, use_cache=False)
        t1 = time.perf_counter()
        pil_scan.scan_files(paths, use_cache=False)
        t2 = time.perf_counter()
        out[name] = {"files": len(paths), "tf_s": round(t1 - t0, 2), "pillow_s": round(t2 - t1, 2)}
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def versions(grain: bool) -> dict:
    import importlib.metadata

    names = ("tensorflow", "keras", "numpy", "pillow") + (("grain",) if grain else ())
    return {"python": platform.python_version(),
            **{name: importlib.metadata.version(name) for name in names}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tarball", default=str(TARBALL), help="CIFAR-10 train/<class>/*.jpg tarball")
    p.add_argument("--per_class", type=int, default=500, help="CIFAR-10 JPEGs per class")
    p.add_argument("--per_class_224", type=int, default=100, help="upscaled images per class")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=5, help="untimed batches per stream")
    p.add_argument("--batches", type=int, default=40, help="timed batches per stream at 32 px")
    p.add_argument("--batches_224", type=int, default=12, help="timed batches at 224 px")
    p.add_argument("--grain", action="store_true",
                   help="also time spnas's numpy transforms driven by grain (threads and "
                        "processes); grain is not a dependency of spnas")
    p.add_argument("--json", default="", help="write the results here")
    args = p.parse_args(argv)
    from spnas.data.numpy_pipeline import default_workers

    work = pathlib.Path(tempfile.mkdtemp(prefix="spnas_input_bench_"))
    os.environ["SPNAS_CACHE_DIR"] = str(work / "cache")  # cold scans, no stale cache
    cifar = extract(pathlib.Path(args.tarball), work / "cifar32", args.per_class)
    folders = {"cifar32": cifar,
               "upscaled224": upscale(cifar, work / "upscaled224", args.per_class_224, 224)}
    load_before = os.getloadavg()
    scans = scan_times(folders)
    print("scan (uncached):", scans, flush=True)
    paths = ("tf", "numpy")
    if args.grain:
        paths += ("grain_threads", "grain_processes")
    t0 = time.time()
    rows = measure(folders, args.reps, args.batch, args.warmup,
                   {32: args.batches, 224: args.batches_224}, paths)
    result = {
        "format": FORMAT,
        "date": datetime.date.today().isoformat(),
        "host": {"cpu": cpu_model(), "cores": os.cpu_count(),
                 "loadavg_before": [round(x, 2) for x in load_before],
                 "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "versions": versions(args.grain),
        "command": "python bench/input_throughput.py " + " ".join(argv or sys.argv[1:]),
        "data": {"cifar32": f"{10 * args.per_class} real CIFAR-10 training JPEGs, 32x32",
                 "upscaled224": f"{10 * args.per_class_224} of them upscaled (Pillow bicubic) "
                                "to 224x224, JPEG quality 90"},
        "numpy_workers": default_workers(),
        "measure_s": round(time.time() - t0, 1),
        "scans": scans,
        "rows": rows,
    }
    print(f"\nimages/s (median of {args.reps}); ratio = path / tf")
    print(f"{'dataset':12s} {'augment':8s} " + " ".join(f"{p:>15s}" for p in paths))
    for r in rows:
        cells = [f"{r['tf_median']:15.0f}"] + [
            f"{r[p + '_median']:8.0f} ({r['ratio_' + p + '_over_tf']:4.2f})" for p in paths[1:]]
        print(f"{r['dataset']:12s} {r['augment']:8s} " + " ".join(f"{c:>15s}" for c in cells))
    if args.json:
        from spnas.fileio import atomic_write_json

        atomic_write_json(args.json, result)
        print("wrote", args.json)


if __name__ == "__main__":
    main()
