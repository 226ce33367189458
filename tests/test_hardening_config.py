"""Configs that cannot mean anything: one line naming the key, the value and what is allowed.

Every case runs before Keras or TensorFlow is imported: the command-line cases run
with a shadow ``tensorflow`` package first on the path that raises on import, so a
check that needed TensorFlow would fail the test (and ``--help`` is shown to need
neither). Each asserts exit status 2 (0 for help), a single stderr line, no
traceback, and the names in the message.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spnas import cli
from spnas.config_check import REFERENCE, RULES, ConfigError, check, leaves
from spnas.configs_path import default_config_path, load_config
from spnas.errors import Interrupted
from tests.helpers import REPO

SHIPPED = {  # every shipped config and the command that takes it
    "default.py": "search", "smoke.py": "search", "cifar10.py": "search",
    "imagenet_pixel1.py": "search", "pixel1_proxy.py": "search",
    "train_default.py": "train", "cifar10_train.py": "train", "imagenet_train.py": "train",
    "export_default.py": "export",
}


@pytest.fixture(scope="module")
def no_tf_env(tmp_path_factory) -> dict:
    shadow = tmp_path_factory.mktemp("shadow")
    for name in ("tensorflow", "tensorflow_datasets", "keras"):
        (shadow / name).mkdir()
        (shadow / name / "__init__.py").write_text(
            f"raise ImportError('{name} is blocked in this test')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(shadow), str(REPO)])
    return env


def _cli(env: dict, module: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def _one_line(r: subprocess.CompletedProcess, status: int = 2) -> str:
    assert r.returncode == status, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# --- the library check --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_config_passes(name):
    c = load_config(name)
    if SHIPPED[name] == "search" and not c.latency_table:  # required, given on the command line
        c.latency_table = "pixel1.json"
    check(c, SHIPPED[name], where=name)


def test_every_rule_names_a_key_some_command_has():
    keys = set()
    for reference in REFERENCE.values():
        keys |= dict(leaves(load_config(reference))).keys()
    assert not set(RULES) - keys, sorted(set(RULES) - keys)


@pytest.mark.parametrize(
    "kind, key, value, fragment",
    [
        ("search", "schedule.epochs", 0.0, "schedule.epochs must be > 0"),
        ("search", "schedule.batch_size", 0, "schedule.batch_size must be >= 1, got 0"),
        ("search", "schedule.lr_per_256", -1.0, "schedule.lr_per_256 must be > 0"),
        ("search", "schedule.lr_decay_rate", 1.5, "lr_decay_rate must be in (0, 1]"),
        ("search", "schedule.ema_decay", 1.0, "ema_decay must be in [0, 1)"),
        ("search", "indicator_keep_prob", 0.0, "indicator_keep_prob must be in (0, 1]"),
        ("search", "lambda_", -0.1, "lambda_ must be >= 0"),
        ("search", "target_ms", -1.0, "target_ms must be >= 0"),
        ("search", "target_tolerance", 0.0, "target_tolerance must be in (0, 1)"),
        ("search", "superkernel_init", "xavier", "superkernel_init must be one of"),
        ("search", "execution.strategy", "gpu", "execution.strategy must be one of"),
        ("search", "execution.checkpoint_every", 0, "checkpoint_every must be >= 1"),
        ("search", "data.on_corrupt", "ignore", "data.on_corrupt must be one of"),
        ("search", "data.validation_fraction", 1.0, "validation_fraction must be in (0, 1)"),
        ("search", "data.input", "torch", "data.input must be one of"),
        ("search", "space.width", 0.0, "space.width must be > 0"),
        ("search", "seed", -3, "seed must be >= 0"),
        ("search", "schedule.weight_decay", float("nan"), "schedule.weight_decay=nan"),
        ("search", "lambda_", float("inf"), "lambda_=inf"),
        ("search", "schedule.batch_size", "64", "schedule.batch_size must be an integer"),
        ("search", "table_proxy", 1, "table_proxy must be true or false"),
        ("train", "dropout", 1.0, "dropout must be in [0, 1)"),
        ("train", "schedule.label_smoothing", -0.1, "label_smoothing must be in [0, 1)"),
        ("train", "data.num_classes", 1, "data.num_classes must be -1 (from the dataset) or >= 2"),
        ("export", "threads", 0, "threads must be >= 1"),
        ("export", "repeats", 0, "repeats must be >= 1"),
        ("export", "num_calibration", 0, "num_calibration must be >= 1"),
    ],
)
def test_values_that_cannot_work_are_named(kind, key, value, fragment):
    c = load_config(REFERENCE[kind])
    *sections, leaf = key.split(".")
    section = c
    for s in sections:
        section = section[s]
    with section.ignore_type():
        section[leaf] = value
    with pytest.raises(ConfigError) as info:
        check(c, kind, where="my.py")
    assert fragment in str(info.value) and str(info.value).startswith("my.py: ")


def test_unknown_keys_and_a_broken_space_are_named():
    c = load_config("default.py")
    c.lamda_ = 0.1
    with pytest.raises(ConfigError, match=r"unknown key 'lamda_' .*did you mean 'lambda_'"):
        check(c, "search")
    c = load_config("default.py")
    c.space.block_strides = [1, 2]
    with pytest.raises(ConfigError, match="space: block_strides has 2 entries for 7 blocks"):
        check(c, "search")
    with pytest.raises(ConfigError, match="unknown key 'arch' for spnas-search"):
        check(load_config("train_default.py"), "search")


def test_lambda_warmup_must_leave_steps_for_lambda():
    c = load_config("default.py")
    c.lambda_warmup_epochs = 8.0
    with pytest.raises(ConfigError, match="lambda_warmup_epochs must be < schedule.epochs"):
        check(c, "search")


# --- the command line (no TensorFlow) ----------------------------------------------


def _user_configs(tmp_path):
    files = {
        "typo.py": ("from spnas.configs import default\n\ndef get_config(arg=None):\n"
                    "    c = default.get_config()\n    c.lamda_ = 0.1\n    return c\n"),
        "syntax.py": "def get_config(:\n",
        "nofunc.py": "x = 1\n",
        "notdict.py": "def get_config(arg=None):\n    return {'a': 1}\n",
        "raises.py": "def get_config(arg=None):\n    raise RuntimeError('boom')\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "adir.py").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--config.nonexistent=1"], ["--config.nonexistent=1", "no key 'nonexistent'",
                                     "--config.help"]),
        (["--config.schedule.epoch=3"], ["did you mean 'schedule.epochs'"]),
        (["--config.schedule=3"], ["'schedule' is a section"]),
        (["--config.space.block_strides=1,2"], ["'space.block_strides' is a list",
                                                "set it in a config file"]),
        (["--config.schedule.batch_size=1.5"], ["--config.schedule.batch_size=1.5",
                                                "must be an integer"]),
        (["--config.execution.deterministic=maybe"], ["must be true or false"]),
        (["--config.schedule.epochs=0"], ["schedule.epochs must be > 0", "default.py"]),
        (["--config.schedule.epochs=nan"], ["schedule.epochs=nan"]),
        (["--config.schedule.lr_per_256=-1"], ["schedule.lr_per_256 must be > 0, got -1.0"]),
        (["--config.data.on_corrupt=ignore"], ["data.on_corrupt must be one of 'error', 'skip'"]),
        (["--config=missing.py"], ["Config file 'missing.py'", "does not exist"]),
        (["--config=adir.py"], ["'adir.py'", "is a directory"]),
        (["--config=syntax.py"], ["'syntax.py' line 1 is not valid Python"]),
        (["--config=nofunc.py"], ["'nofunc.py' defines no get_config()"]),
        (["--config=notdict.py"], ["returned a dict"]),
        (["--config=raises.py"], ["'raises.py' failed to load: RuntimeError: boom"]),
        (["--config=typo.py"], ["typo.py", "unknown key 'lamda_'", "did you mean 'lambda_'"]),
    ],
)
def test_search_command_line(no_tf_env, tmp_path, args, fragments):
    cwd = _user_configs(tmp_path)
    line = _one_line(_cli(no_tf_env, "spnas.search.main", f"--workdir={tmp_path / 'w'}", *args,
                          cwd=cwd))
    assert line.startswith("spnas-search: error: ")
    for fragment in fragments:
        assert fragment in line, line
    assert not (tmp_path / "w").exists()  # nothing was created before the check


@pytest.mark.parametrize(
    "module, args, fragment",
    [
        ("spnas.train.main", ["--config.schedule.epochs=-1"], "schedule.epochs must be > 0"),
        ("spnas.train.main", ["--config.nope=1"], "no key 'nope'"),
        ("spnas.pipeline.main", ["--export.threads=0"], "--export (") ,
        ("spnas.pipeline.main", ["--train.schedule.batch_size=0"], "schedule.batch_size must be >= 1"),
        ("spnas.pipeline.main", ["--search.foo=1"], "--search.help lists its keys"),
        ("spnas.export.main", ["--threads=0"], "threads must be >= 1"),
    ],
)
def test_other_commands(no_tf_env, tmp_path, module, args, fragment):
    line = _one_line(_cli(no_tf_env, module, f"--workdir={tmp_path / 'w'}", *args))
    assert fragment in line, line


def test_help_lists_config_keys_without_tensorflow(no_tf_env):
    r = _cli(no_tf_env, "spnas.search.main", "--help")
    assert r.returncode == 0, r.stderr
    assert "--workdir: Output directory" in r.stdout
    assert "schedule.epochs = 8.0" in r.stdout
    assert "lambda_ = 0.02" in r.stdout and "runtime loss" in r.stdout  # the comment beside it
    r = _cli(no_tf_env, "spnas.train.main", f"--config={default_config_path('cifar10_train.py')}",
             "--config.help")
    assert r.returncode == 0, r.stderr
    assert "cifar10_train.py" in r.stdout and "fallback_arch = " in r.stdout
    assert "--workdir" not in r.stdout  # --config.help: the keys only


# --- interruption --------------------------------------------------------------------


def test_ctrl_c_and_interrupted_are_one_line(capsys):
    def raise_(e):
        def body(argv):
            raise e
        return body

    with pytest.raises(SystemExit) as info:
        cli.guarded("spnas-x", raise_(KeyboardInterrupt()), [])
    assert info.value.code == 130
    with pytest.raises(SystemExit) as info:
        cli.guarded("spnas-x", raise_(Interrupted("interrupted at step 4; checkpoint in D")), [])
    assert info.value.code == 130
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("spnas-x: interrupted")
    assert err[1] == "spnas-x: interrupted at step 4; checkpoint in D"


def test_native_start_up_noise_is_dropped_and_the_rest_kept(capfd):
    with cli._native_stderr_filtered():
        os.write(2, b"I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your "
                    b"machine, GPU will not be used.\n")
        os.write(2, b"E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n")
        os.write(2, b"a real warning about the user's run\n")
    err = capfd.readouterr().err
    assert "a real warning about the user's run" in err
    assert "cuda" not in err.lower()


@pytest.mark.parametrize(
    "module, args, fragment",
    [
        ("spnas.search.main", [], "Flag --workdir must have a value"),
        ("spnas.search.main", ["--workdir=w", "extra"], "Unexpected arguments: ['extra']"),
        ("spnas.search.main", ["--workdir=w", "--nosuchflag=1"], "Unknown command line flag"),
        ("spnas.latency.main", [], "Usage: spnas-latency {predict|import|profile|validate}"),
        ("spnas.latency.main", ["validate", "--n=abc"], "flag --n=abc"),
    ],
)
def test_flag_errors_are_one_line(no_tf_env, tmp_path, module, args, fragment):
    line = _one_line(_cli(no_tf_env, module, *args, cwd=tmp_path))
    assert fragment in line, line


def test_an_empty_workdir_is_not_the_current_directory(tmp_path):
    from spnas.errors import UserError
    from spnas.fileio import check_writable_dir

    with pytest.raises(UserError, match=r"work directory is empty \(--workdir=\)"):
        check_writable_dir("")
