"""One run at a time per work directory, and a record of what ran there.

Single-Path NAS is a chain of long stages on one work directory (search ->
train -> export; Stamoulis et al., 2019, Sec. 4), each resumable after a kill.
Two things keep such a directory truthful:

**The lock** (``DIR/.spnas.lock``, JSON ``{pid, host, command, started}``),
created atomically with ``O_CREAT | O_EXCL``. A second run on a busy directory
is refused with one line naming the running process. A lock left by a killed run
on this host (its pid no longer alive, or alive but a later process) is taken
over with one note line. A lock from another host cannot be checked: the
refusal says how to remove it if that run is really dead. The lock is
re-entrant within one process (``spnas-pipeline`` takes it once; the stages it
calls take it again without waiting on themselves) and is released on exit,
exceptions included. Taking it removes the temporary files of earlier killed
runs (:func:`clean_leftovers`): no spnas process can be writing them then.

Two processes seeing the same stale lock at once cannot both take it over: the
taker moves the lock aside under a name of its own and only removes it if the
moved file is the stale one it judged; a fresh lock moved by mistake is put back.

**The run record** (``DIR/run.json``): per stage (``search``, ``train``,
``export``, ``pipeline``) the configuration as a dict, the spnas version and git
commit, when it started, each resume, and when it finished with a pointer to its
result. A rerun (:func:`begin_stage`) either continues the same run, or returns
the recorded result of a finished one, or is refused with one line naming the
keys that differ. Keys in :data:`RESULT_NEUTRAL_KEYS` do not change results and
may differ (noted, and listed in the record's resume entry).

Stdlib only (no Keras, no TensorFlow): the command-line tools may use it before
the heavy libraries load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import re
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import spnas
from spnas.errors import UserError
from spnas.fileio import atomic_write_json, note

LOCK_FILE = ".spnas.lock"
RUN_FILE = "run.json"
RUN_FORMAT = "spnas.run/1"

# Config keys that may differ between a run and its resume: where the data lives,
# where and how the job is placed, how often it logs or checkpoints. None enters the
# maths of a step: each step's batch, random state and learning rate are functions of
# the global step, and the runner resumes from any step (spnas/train/runner.py), so
# another checkpoint period only moves the chunk boundaries.
RESULT_NEUTRAL_KEYS = (
    "data.data_dir",
    "data.manual_dir",
    "execution.tpu",
    "execution.coordinator_address",
    "execution.num_processes",
    "execution.process_id",
    "execution.run_eagerly",
    "execution.log_every",
    "execution.checkpoint_every",
)

# A lock file younger than this that cannot be read is being written by its owner.
_UNREADABLE_GRACE_S = 10.0
# Folders below the work directory where checkpoints write temporary files.
CHECKPOINT_FOLDERS = ("checkpoints", "train_checkpoints")
# Temporary files of spnas writers: fileio's ``.<name>.<random>.tmp``, the trainer's
# ``.<name>.<pid>.partial.keras``, the checkpoint's ``ckpt-partial.weights.h5`` and
# fileio's ``.write_probe<random>``.
_LEFTOVER = re.compile(
    r"^(\..+\.[A-Za-z0-9_]+\.tmp|\..+\.\d+\.partial\.keras|ckpt-partial\.weights\.h5"
    r"|\.write_probe[A-Za-z0-9_]+)$"
)


class WorkdirBusy(UserError):
    """Another run holds the work directory's lock."""


class RunRecordError(UserError):
    """The run record refuses this run (another config), or cannot be read."""


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _command() -> str:
    argv = list(sys.argv) or ["python"]
    argv[0] = os.path.basename(argv[0])
    return shlex.join(argv)


def _proc_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


# ---------------------------------------------------------------------------- the lock

_held: dict[tuple[str, int], int] = {}  # (lock path, pid) -> depth; the pid guards forks
_held_mutex = threading.Lock()


def _read_lock(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            info = json.loads(f.read().decode("utf-8"))
        return info if isinstance(info, dict) and "pid" in info else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _describe(info: dict) -> str:
    return (f"pid {info.get('pid')} on host {info.get('host')!r} "
            f"(`{info.get('command')}`, since {info.get('started')})")


def _stale_reason(path: str, info: dict | None) -> str | None:
    """Why the lock at ``path`` is stale (None: it may belong to a live run).

    Raises:
      WorkdirBusy: it belongs to another host (it cannot be checked from here).
    """
    if info is None:
        try:
            age = time.time() - os.path.getmtime(path)
        except OSError:
            return "it is gone"
        if age < _UNREADABLE_GRACE_S:
            return None
        return "it is unreadable (a run was killed while creating it)"
    if info.get("host") != socket.gethostname():
        raise WorkdirBusy(
            f"Work directory {os.path.dirname(path)} is locked by {_describe(info)}, "
            "which cannot be checked from this host; if that run is really dead, delete "
            f"{path} and rerun.")
    pid = int(info.get("pid", -1))
    if not _alive(pid):
        return f"pid {pid} is no longer running"
    start = info.get("proc_start")
    if start is not None and _proc_start(pid) not in (None, start):
        return f"pid {pid} is now another process"
    return None


def _create(path: str) -> dict | None:
    """Creates the lock file atomically; its content, or None if it exists."""
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
            "started": _now(), "proc_start": _proc_start(os.getpid())}
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(info) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return info


def _take_over(path: str, judged: dict | None) -> bool:
    """Removes the stale lock at ``path`` if it is still the one judged stale."""
    aside = f"{path}.{os.getpid()}.stale"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True  # its owner (or another taker) removed it
    if _read_lock(aside) == judged:
        os.unlink(aside)
        return True
    # Another process replaced the stale lock with a live one meanwhile: put it back.
    try:
        os.link(aside, path)
    except FileExistsError:
        pass
    os.unlink(aside)
    return False


def _acquire(workdir: str) -> dict:
    path = os.path.join(workdir, LOCK_FILE)
    for _ in range(20):
        info = _create(path)
        if info is not None:
            return info
        other = _read_lock(path)
        reason = _stale_reason(path, other)
        if reason is None:
            if other is None:
                raise WorkdirBusy(f"Work directory {workdir} is being locked by another run "
                                  f"right now ({path}); wait for it or use another --workdir.")
            raise WorkdirBusy(f"Work directory {workdir} is in use by {_describe(other)}; wait "
                              "for that run to finish, or use another --workdir.")
        if _take_over(path, other):
            note(f"took over the lock of {workdir}: the earlier run's lock is stale "
                 f"({reason}; {_describe(other) if other else 'no details'}).")
    raise WorkdirBusy(f"Work directory {workdir}: could not take its lock {path} (other runs "
                      "keep taking it); use another --workdir.")


def _release(workdir: str, info: dict) -> None:
    path = os.path.join(workdir, LOCK_FILE)
    if _read_lock(path) == info:  # never remove a lock that is not ours
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def locked(workdir: str, take: bool = True) -> Iterator[str]:
    """Holds the lock of ``workdir`` (created if needed); yields its absolute path.

    Re-entrant within a process. The first acquisition also removes the temporary
    files earlier killed runs left (:func:`clean_leftovers`). ``take=False`` holds
    nothing (the other hosts of a cluster, which share the chief's directory).

    Raises:
      WorkdirBusy: another live run holds it, or a run on another host does.
    """
    workdir = os.path.abspath(os.fspath(workdir))
    if not take:
        yield workdir
        return
    os.makedirs(workdir, exist_ok=True)
    key = (os.path.join(workdir, LOCK_FILE), os.getpid())
    with _held_mutex:
        depth = _held.get(key, 0)
        if depth == 0:
            info = _acquire(workdir)
        _held[key] = depth + 1
    if depth == 0:
        try:
            clean_leftovers(workdir)
        except BaseException:
            with _held_mutex:
                _held.pop(key, None)
            _release(workdir, info)
            raise
    try:
        yield workdir
    finally:
        with _held_mutex:
            _held[key] -= 1
            last = _held[key] == 0
            if last:
                del _held[key]
        if last:
            _release(workdir, info)


def clean_leftovers(workdir: str) -> list[str]:
    """Removes the temporary files of killed runs in ``workdir`` and its checkpoint
    folders (call it holding the lock); prints one note naming them; returns them."""
    removed = []
    for folder in (workdir, *(os.path.join(workdir, c) for c in CHECKPOINT_FOLDERS)):
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in sorted(names):
            path = os.path.join(folder, name)
            if _LEFTOVER.match(name) and os.path.isfile(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed.append(path)
    if removed:
        shown = ", ".join(os.path.relpath(p, workdir) for p in removed[:5])
        more = f" and {len(removed) - 5} more" if len(removed) > 5 else ""
        note(f"removed {len(removed)} temporary file(s) left in {workdir} by an earlier "
             f"killed run: {shown}{more}.")
    return removed


# ---------------------------------------------------------------------- the run record


def git_commit() -> str | None:
    """The commit of the checkout spnas runs from, read from ``.git`` (no subprocess)."""
    git = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(spnas.__file__))), ".git")
    try:
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:]
        ref_file = os.path.join(git, ref)
        if os.path.isfile(ref_file):
            with open(ref_file) as f:
                return f.read().strip() or None
        with open(os.path.join(git, "packed-refs")) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        pass
    return None


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def differences(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """``(key, old, new)`` for each dotted key whose value differs, sorted by key."""
    a, b = flatten(old), flatten(new)
    missing = "<absent>"
    return [(k, a.get(k, missing), b.get(k, missing))
            for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def read_record(workdir: str) -> dict:
    """``DIR/run.json`` ({} when there is none).

    Raises:
      RunRecordError: it exists but is not a run record.
    """
    path = os.path.join(workdir, RUN_FILE)
    if not os.path.exists(path):
        return {}
    fix = (f"restore it, or start over in a new --workdir (deleting {path} forgets what "
           "ran here)")
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunRecordError(f"Run record {path} cannot be read ({e}); {fix}.") from None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT \
            or not isinstance(record.get("stages"), dict):
        raise RunRecordError(f"Run record {path} is not a {RUN_FORMAT} record; {fix}.")
    return record


def _write_record(workdir: str, record: dict) -> None:
    atomic_write_json(os.path.join(workdir, RUN_FILE), record)


@dataclasses.dataclass
class StageRun:
    """One stage's entry in the run record, for the run that holds the lock.

    ``finished`` is True when the recorded run had finished with this config: the
    caller returns the recorded result (``result``) and rewrites nothing.
    """

    workdir: str
    stage: str
    finished: bool
    result: dict | None = None
    write: bool = True  # False on the other hosts of a cluster: they only read the record

    def finish(self, result: dict) -> None:
        """Records that the stage finished, with a pointer to its result (file, hash...)."""
        if not self.write:
            return
        record = read_record(self.workdir)
        entry = record["stages"][self.stage]
        entry["finished"] = _now()
        entry["result"] = _jsonable(result)
        _write_record(self.workdir, record)

    def forget(self) -> None:
        """Drops the stage's entry (the run left nothing a rerun could continue)."""
        if not self.write:
            return
        record = read_record(self.workdir)
        if record.get("stages", {}).pop(self.stage, None) is not None:
            _write_record(self.workdir, record)


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def begin_stage(workdir: str, stage: str, config: dict, *, progress: int = 0,
                inputs: dict | None = None, refuse: bool = True, write: bool = True,
                error: type[UserError] = RunRecordError, prog: str = "spnas") -> StageRun:
    """Checks this run of ``stage`` against the record and records it (hold the lock).

    Args:
      workdir: the work directory.
      stage: ``"search"``, ``"train"``, ``"export"`` or ``"pipeline"``.
      config: the stage's configuration (``config.to_dict()``).
      progress: what an earlier run left to continue (the checkpoint's step); with 0
        an unfinished earlier run with another config is simply replaced.
      inputs: what else the result depends on (e.g. the architecture's sha256),
        compared like the config.
      refuse: False replaces a differing record instead of refusing (spnas-pipeline's
        own entry: its stages refuse for it).
      write: False checks without writing or printing (the non-chief hosts of a
        cluster, which share the chief's work directory and take no lock).
      error: the exception type of a refusal (a ``UserError`` subclass).
      prog: how notes name the command.

    Raises:
      error: the recorded run used another config (one line with the first keys).
      RunRecordError: run.json cannot be read.
    """
    record = read_record(workdir) or {"format": RUN_FORMAT, "stages": {}}
    config = _jsonable(config)
    inputs = _jsonable(inputs or {})
    previous = record["stages"].get(stage)
    fresh = {"config": config, "inputs": inputs, "version": spnas.__version__,
             "git_commit": git_commit(), "started": _now(), "host": socket.gethostname(),
             "command": _command(), "resumes": [], "finished": None, "result": None}
    def save(result: StageRun) -> StageRun:
        if write:
            _write_record(workdir, record)
        return result

    if previous is None:
        record["stages"][stage] = fresh
        return save(StageRun(workdir, stage, finished=False, write=write))
    diff = differences({**previous.get("config", {}), "(input)": previous.get("inputs", {})},
                       {**config, "(input)": inputs})
    neutral = [d for d in diff if d[0] in RESULT_NEUTRAL_KEYS]
    changed = [d for d in diff if d[0] not in RESULT_NEUTRAL_KEYS]
    listing = "; ".join(f"{k}: {_show(a)} -> {_show(b)}" for k, a, b in changed[:3])
    if len(changed) > 3:
        listing += f" (and {len(changed) - 3} more)"
    finished = previous.get("finished") is not None
    if changed and (finished or progress > 0) and refuse:
        state = ("finished" if finished else f"stopped at step {progress}")
        raise error(
            f"The {stage} run recorded in {os.path.join(workdir, RUN_FILE)} ({state}) does not "
            f"fit this config: {listing}. Rerun with the same config to continue, or use a new "
            "--workdir to start over.")
    if changed:
        if refuse and write:
            print(f"{prog}: note: the earlier {stage} run in {workdir} left nothing to continue; "
                  f"starting over with this config ({listing}).", file=sys.stderr)
        record["stages"][stage] = fresh
        return save(StageRun(workdir, stage, finished=False, write=write))
    if neutral and write:
        print(f"{prog}: note: {stage}: "
              + "; ".join(f"{k} {_show(a)} -> {_show(b)}" for k, a, b in neutral)
              + " accepted (does not change results).", file=sys.stderr)
    if finished:
        return StageRun(workdir, stage, finished=True, result=previous.get("result"), write=write)
    previous.setdefault("resumes", []).append(
        {"at": _now(), "step": int(progress), "host": socket.gethostname(),
         "command": _command(), "accepted": {k: b for k, _, b in neutral}})
    previous["config"] = config  # the neutral keys as this run has them
    return save(StageRun(workdir, stage, finished=False, write=write))
