"""Device profiling over adb, against a fake ``adb`` and a fake ``benchmark_model``.

The fake adb (a Python script written into tmp_path) answers ``adb devices``,
``adb -s S push`` (a copy) and ``adb -s S shell CMD`` (runs CMD with ``sh``
on this host, ``getprop`` answered from its config); the device directory is
a tmp_path folder. The fake benchmark_model prints what TFLite's tool prints,
in the format its config asks for, with a latency that depends on the model's
size, so different models get different entries.
"""

import json
import os
import subprocess
import sys

import pytest

from spnas.latency.adb import (
    AdbError,
    AdbTarget,
    AdbTimeoutError,
    BenchmarkOutputError,
    BenchmarkStats,
    DeviceNotFoundError,
    cpu_mask,
    parse_benchmark_output,
)
from tests.tiny_spaces import ONE_LAYER

# benchmark_model output as TFLite 2.x prints it (trimmed); the first count=
# line is the warm-up, the second the timed runs.
NEW_FORMAT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/spnas/m.tflite]
INFO: Loaded model /data/local/tmp/spnas/m.tflite
INFO: Initialized session in 16.599ms.
INFO: Running benchmark for at least 20 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=70 first=8539 curr=6894 min=6043 max=8539 avg=7181.07 std=656

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=153 first=6449 curr=6510 min=6321 max=7012 avg=6479.5 std=130

INFO: Inference timings in us: Init: 16599, First inference: 8539, Warmup (avg): 7181.07, Inference (avg): 6479.5
INFO: Memory footprint delta from the start of the tool (MB): init=8.45312 overall=10.5898
"""
SUMMARY_ONLY = "INFO: Inference timings in us: Init: 1200, First inference: 300, " \
               "Warmup (avg): 250.5, Inference (avg): 1234.5\n"
TF1_FORMAT = "Average inference timings in us: Warmup: 144578, Init: 2016, no stats: 143024\n"


def test_parse_new_format_takes_the_timed_runs():
    s = parse_benchmark_output(NEW_FORMAT, threads=4)
    assert s.avg_ms == pytest.approx(6.4795) and s.std_ms == pytest.approx(0.130)
    assert s.min_ms == pytest.approx(6.321) and s.max_ms == pytest.approx(7.012)
    assert s.count == 153 and s.threads == 4
    assert s.spread == pytest.approx(130 / 6479.5)


def test_parse_summary_only_and_tf1_formats():
    s = parse_benchmark_output(SUMMARY_ONLY)
    assert s.avg_ms == pytest.approx(1.2345) and s.count == 0
    assert s.spread != s.spread  # NaN: no std reported
    assert parse_benchmark_output(TF1_FORMAT).avg_ms == pytest.approx(143.024)


def test_parse_rejects_output_without_timing():
    text = "ERROR: Could not open '/data/local/tmp/spnas/x.tflite'.\nERROR: Benchmarking failed.\n"
    with pytest.raises(BenchmarkOutputError, match="Could not open"):
        parse_benchmark_output(text)
    with pytest.raises(BenchmarkOutputError, match="non-positive"):
        parse_benchmark_output("INFO: Inference timings in us: Inference (avg): 0\n")
    assert issubclass(BenchmarkOutputError, RuntimeError)


def test_pooled_stats_include_drift_between_rounds():
    a = BenchmarkStats(1.0, 0.0, 1.0, 1.0, 10, 0.0, 1)
    b = BenchmarkStats(2.0, 0.0, 2.0, 2.0, 10, 0.0, 1)
    p = BenchmarkStats.pooled([a, b])
    assert p.avg_ms == pytest.approx(1.5) and p.std_ms == pytest.approx(0.5)
    assert p.count == 20 and p.min_ms == 1.0 and p.max_ms == 2.0
    assert cpu_mask([4, 5]) == "30" and cpu_mask([0]) == "1"


FAKE_ADB = r'''#!{python} -S
import json, os, shutil, subprocess, sys
here = os.path.dirname(os.path.abspath(__file__))
cfg = json.load(open(os.path.join(here, "fake_adb.json")))
args = sys.argv[1:]
with open(os.path.join(here, "adb_calls.log"), "a") as log:
    log.write(json.dumps(args) + "\n")
if args == ["devices"]:
    print("List of devices attached")
    for serial, state in cfg["devices"].items():
        print(f"{serial}\t{state}")
    sys.exit(0)
if args[:1] == ["-s"]:
    serial, args = args[1], args[2:]
    if cfg["devices"].get(serial) != "device":
        print(f"error: device '{serial}' not found", file=sys.stderr)
        sys.exit(1)
if args[0] == "push":  # push SRC... DST: DST is a directory when it ends with / or is one
    *sources, dest = args[1:]
    for src in sources:
        to = os.path.join(dest, os.path.basename(src)) if dest.endswith("/") or os.path.isdir(dest) else dest
        shutil.copyfile(src, to)
    print(f"{len(sources)} files pushed, 0 skipped.")
    sys.exit(0)
if args[0] == "shell":
    cmd = " ".join(args[1:])
    if cmd.startswith("getprop "):
        print(cfg["props"].get(cmd.split()[1], ""))
        sys.exit(0)
    sys.exit(subprocess.run(["sh", "-c", cmd]).returncode)
print("unknown command", args, file=sys.stderr)
sys.exit(1)
'''

FAKE_BENCHMARK = r'''#!{python} -S
import json, os, sys, time
flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
cfg = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench.json")))
mode = cfg.get("mode", "new")
if mode == "sleep":
    time.sleep(4)
if mode == "garbage":
    print("INFO: STARTING!")
    print("ERROR: Failed to apply XNNPACK delegate.")
    sys.exit(0)
runs = int(flags["num_runs"])
avg = 100.0 + os.path.getsize(flags["graph"]) / 10.0  # us; depends on the model
std = avg * cfg.get("rel_std", 0.01)
print("INFO: STARTING!")
print(f"INFO: Num threads: [{flags['num_threads']}]")
print(f"INFO: Graph: [{flags['graph']}]")
print(f"INFO: Running benchmark for at least {flags['warmup_runs']} iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.")
print(f"INFO: count=3 first={avg*2:.0f} curr={avg:.0f} min={avg:.0f} max={avg*2:.0f} avg={avg*1.3:.2f} std={avg/2:.0f}")
print()
print(f"INFO: Running benchmark for at least {runs} iterations and at least 1 seconds but terminate if exceeding 150 seconds.")
if mode == "new":
    print(f"INFO: count={runs} first={avg:.0f} curr={avg:.0f} min={avg-std:.0f} max={avg+std:.0f} avg={avg:.2f} std={std:.0f}")
print()
print(f"INFO: Inference timings in us: Init: 1200, First inference: {avg*2:.0f}, Warmup (avg): {avg*1.3:.2f}, Inference (avg): {avg:.2f}")
'''


@pytest.fixture()
def device(tmp_path):
    """A fake adb with one ready device ``S1`` and a host benchmark_model binary."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    remote = tmp_path / "device"
    remote.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.replace("{python}", sys.executable))
    adb.chmod(0o755)
    (bin_dir / "fake_adb.json").write_text(json.dumps({
        "devices": {"S1": "device"},
        "props": {"ro.product.model": "FakePhone", "ro.product.cpu.abi": "arm64-v8a",
                  "ro.build.version.release": "14"},
    }))
    bench = bin_dir / "benchmark_model"
    bench.write_text(FAKE_BENCHMARK.replace("{python}", sys.executable))
    bench.chmod(0o755)
    (remote / "bench.json").write_text(json.dumps({"mode": "new"}))

    class Device:
        dir = bin_dir
        remote_dir = str(remote)

        def set_devices(self, devices):
            cfg = json.loads((bin_dir / "fake_adb.json").read_text())
            cfg["devices"] = devices
            (bin_dir / "fake_adb.json").write_text(json.dumps(cfg))

        def set_bench(self, **cfg):
            (remote / "bench.json").write_text(json.dumps(cfg))

        def calls(self):
            return [json.loads(x) for x in (bin_dir / "adb_calls.log").read_text().splitlines()]

        def target(self, **kw):
            kw.setdefault("serial", "S1")
            return AdbTarget(benchmark_model=str(bench), adb=str(adb), remote_dir=str(remote),
                             **kw)

    return Device()


def test_measure_pushes_times_and_cleans_up(device):
    target = device.target(rounds=2)
    models = [b"x" * 1000, b"y" * 5000]
    stats = target.measure(models, threads=2, warmup=3, repeats=11)
    # avg = 100 + size/10 us per the fake; pooled over two rounds of 6 and 5 runs.
    assert [s.avg_ms for s in stats] == pytest.approx([0.2, 0.6])
    assert [s.count for s in stats] == [11, 11]
    assert all(0 < s.spread < 0.05 for s in stats)
    shells = [" ".join(c[3:]) for c in device.calls() if c[2:3] == ["shell"]]
    bench = [c for c in shells if "--graph=" in c]
    assert len(bench) == 4  # 2 models x 2 rounds
    assert all("--num_threads=2" in c and "--warmup_runs=3" in c for c in bench)
    assert sorted(c.split("--num_runs=")[1].split()[0] for c in bench) == ["5", "5", "6", "6"]
    # The models were removed from the device; the pushed binary stays.
    assert sorted(os.listdir(device.remote_dir)) == ["bench.json", "benchmark_model"]
    assert target.describe()["model"] == "FakePhone"


def test_taskset_and_extra_flags(device):
    target = device.target(rounds=1, cpus=(0,), benchmark_args=("--use_xnnpack=true",))
    target.measure([b"z" * 100], repeats=3)
    bench = [" ".join(c[3:]) for c in device.calls() if "--graph=" in " ".join(c)]
    assert bench[0].startswith("taskset 1 ") and bench[0].endswith("--use_xnnpack=true")


def test_device_problems_are_clear(device, tmp_path):
    device.set_devices({})
    with pytest.raises(DeviceNotFoundError, match="no ready device"):
        device.target(serial=None).connect()
    device.set_devices({"S2": "device"})
    with pytest.raises(DeviceNotFoundError, match="'S1' is not among .*S2"):
        device.target().connect()
    device.set_devices({"S1": "unauthorized"})
    with pytest.raises(DeviceNotFoundError, match="'unauthorized'"):
        device.target().connect()
    device.set_devices({"S1": "device", "S2": "device"})
    with pytest.raises(DeviceNotFoundError, match="several devices"):
        device.target(serial=None).connect()
    with pytest.raises(AdbError, match="not found"):
        AdbTarget(benchmark_model="bm", adb=str(tmp_path / "no_adb")).connect()
    with pytest.raises(AdbError, match="neither a file on this host nor an executable"):
        AdbTarget(benchmark_model="/nonexistent/benchmark_model", adb=str(device.dir / "adb"),
                  serial="S1", remote_dir=device.remote_dir).connect()


def test_unparseable_output_and_timeout(device):
    device.set_bench(mode="garbage")
    with pytest.raises(BenchmarkOutputError, match="Failed to apply XNNPACK"):
        device.target(rounds=1).measure([b"a"], repeats=2)
    device.set_bench(mode="summary")  # no statistics line: the summary's average is used
    (s,) = device.target(rounds=1).measure([b"a" * 10], repeats=2)
    assert s.avg_ms == pytest.approx(0.101) and s.count == 0
    device.set_bench(mode="sleep")
    with pytest.raises(AdbTimeoutError, match="did not finish within 1 s"):
        target = device.target(rounds=1)
        target.connect()
        target.timeout_s = 1  # the fake benchmark sleeps 4 s
        target.measure([b"a"], repeats=2)


@pytest.fixture()
def no_conversion(monkeypatch):
    """Stands in bytes for TFLite conversion: the fake device times by size only.

    One byte per parameter (plus one), so bigger candidates get bigger
    "models" and longer fake latencies, without minutes of conversion.
    """
    import spnas.export.tflite
    import spnas.latency.probe
    import spnas.latency.runtimes

    def fake(model, method="saved_model"):
        return b"m" * (model.count_params() + 1)

    # Every module that bound the converter at import (test collection may import them
    # before this fixture runs).
    for module in (spnas.latency.probe, spnas.export.tflite, spnas.latency.runtimes):
        monkeypatch.setattr(module, "convert_float", fake)


def layer_params(space, index, choice):
    from spnas.latency.probe import layer_model

    return layer_model(space.layers()[index], choice).count_params()


def test_profile_and_validate_on_the_fake_device(device, no_conversion):
    from spnas.latency.profile import ProfileError, profile_table
    from spnas.latency.validate import validate
    from spnas.space import SearchSpace

    space = SearchSpace(**ONE_LAYER)
    table = profile_table(space, target=device.target(rounds=1), statistic="avg", repeats=4,
                          warmup=1, progress=False, device="fake", calibrate=2)
    table.validate_for(space)
    assert table.extra["target"] == "adb" and table.extra["statistic"].startswith("avg")
    assert table.extra["host"]["model"] == "FakePhone" and table.runtime == "TFLite benchmark_model"
    row = table.layers[1]
    assert row["k3_e3"] < row["k3_e6"] < row["k5_e6"]  # latency grows with the model's size
    assert set(table.extra["constant_parts_ms"]) == {"stem", "layer_0", "head"}
    # The probe, a 1x1 conv of 8 channels: 8 * 8 + 8 parameters -> 73 bytes -> 107.3 us.
    assert table.extra["invoke_overhead_ms"] == pytest.approx(0.1073)
    assert row["k3_e3"] == pytest.approx(table.extra["calibration"]["scale"] * (
        0.1 + (layer_params(space, 1, "k3_e3") + 1) / 1e4))
    # Two whole networks timed with the layers scale the table (the fake's
    # latency is not additive over layers, so the scale is not 1).
    calibration = table.extra["calibration"]
    assert calibration["n"] == 2 and len(calibration["archs"]) == 2
    # By hand from the fake benchmark (avg = 100 us + bytes / 10, bytes = params + 1):
    # a net measures 0.1 + (P + 1) / 1e4 ms; unscaled, the table predicts the sum of its
    # 4 timed parts (stem, layer 0, layer 1, head), each 0.1 + (P_part + 1) / 1e4, i.e.
    # 0.4 + (P + 4) / 1e4 (the parts' parameters add up to the net's); the scale is the
    # median of the two nets' measured / predicted, the mean of two numbers.
    from spnas.latency.probe import network_model

    hand = []
    for choices in calibration["archs"]:
        p = network_model(space, choices).count_params()
        hand.append((0.1 + (p + 1) / 1e4) / (0.4 + (p + 4) / 1e4))
    assert calibration["ratios"] == pytest.approx(hand, abs=1e-5)  # stored rounded to 5 digits
    assert calibration["scale"] == pytest.approx((hand[0] + hand[1]) / 2, rel=1e-4)
    report = validate(table, space, target=device.target(rounds=1), n=2, repeats=2,
                      progress=False)
    # This space has 4 architectures only: the validation may repeat calibration nets.
    seen = {tuple(a) for a in calibration["archs"]}
    assert report["nets_in_calibration"] == sum(tuple(x["choices"]) in seen
                                                for x in report["nets"])
    assert report["n"] == 2 and report["settings"]["statistic"] == "avg"
    assert all(x["measured_ms"] > 0.1 for x in report["nets"])
    with pytest.raises(ValueError, match="profiled on target 'adb'"):
        validate(table, space, n=1, progress=False)
    with pytest.raises(ValueError, match="Unknown statistic 'p10' for benchmark_model"):
        profile_table(space, target=device.target(), statistic="p10", progress=False)
    # An unstable device: re-measured, then an error and no table.
    device.set_bench(mode="new", rel_std=0.5)
    with pytest.raises(ProfileError, match="std/avg is 0.50 after 3 measurements"):
        profile_table(space, target=device.target(rounds=1), statistic="avg", repeats=2,
                      warmup=1, progress=False, max_spread=0.2)


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "spnas.latency.main", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def _cli_flags(device, tmp_path):
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(ONE_LAYER))
    return [f"--space={space_file}", f"--out={tmp_path / 'out' / 'table.json'}", "--target=adb",
            f"--adb={device.dir / 'adb'}", "--serial=S1", f"--remote_dir={device.remote_dir}",
            f"--benchmark_model={device.dir / 'benchmark_model'}", "--repeats=4", "--rounds=2",
            "--warmup=1", "--progress=false"]


def test_cli_profile_without_the_device_writes_nothing(device, tmp_path):
    device.set_devices({})
    r = _cli("profile", *_cli_flags(device, tmp_path))
    assert r.returncode == 2 and "'S1' is not among" in r.stderr
    assert not (tmp_path / "out" / "table.json").exists()
    flags = [f for f in _cli_flags(device, tmp_path) if not f.startswith("--benchmark_model")]
    r = _cli("profile", *flags)
    assert r.returncode != 0 and "needs --benchmark_model" in r.stderr


@pytest.mark.slow
def test_cli_profile_on_the_fake_device(device, tmp_path):
    from spnas.latency import load_table
    from spnas.space import SearchSpace

    r = _cli("profile", *_cli_flags(device, tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    table = load_table(str(tmp_path / "out" / "table.json"), space=SearchSpace(**ONE_LAYER))
    assert table.device == "FakePhone (arm64-v8a, adb S1)"
    assert table.extra["target"] == "adb" and table.extra["statistic"].startswith("avg")
    assert table.layers[1]["k5_e6"] > table.layers[1]["k3_e3"] > 0.1
