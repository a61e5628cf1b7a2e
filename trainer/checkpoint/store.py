"""Atomic training checkpoints, a manifest naming the newest complete one, and finding what to resume from.

A checkpoint is MindSpore's .ckpt of the whole train step (network weights, BatchNorm statistics, the optimizer's
moments and its `global_step`, which is the lr schedule's position) plus incv4's position in the run (epoch,
global step, step within the epoch) stored inside the same file. It is written to a hidden temporary name in the
same directory, fsynced, then renamed, so a file with a final name is always complete; `manifest.json` (written
the same way) lists the complete checkpoints, newest last. Only the newest `keep_checkpoint_max` are kept.
With `asynchronous=True` (the trainer's rank 0) a save copies the parameters to host memory and returns; a
background thread does the rest, in the same order (CheckpointWriter.save says what waits for what).

A full disk or any other write error is reported in one line and counted (metrics.checkpoint_failed); training
goes on and the previous checkpoint stays the newest. On start, candidates are tried newest first; one that fails
to load (truncated, bit-flipped: MindSpore's CRC check catches it) is skipped with a warning.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

MANIFEST = "manifest.json"
PREFIX = "incv4"
# Keys incv4 adds to the checkpoint (prefixed: the optimizer already has a parameter named `global_step`).
EPOCH_KEY = "incv4_epoch"
GLOBAL_STEP_KEY = "incv4_global_step"
STEP_IN_EPOCH_KEY = "incv4_step_in_epoch"
# Test hook: sleep this long between writing the temporary file and renaming it (a kill lands mid-write).

_NAME_RE = re.compile(rf"{PREFIX}-e(\d+)-s(\d+)\.ckpt")  # used with fullmatch: no path parts, no trailing newline


@dataclass
class Position:
    """Where a run stands: `epoch` epochs are complete plus `step_in_epoch` steps of the next one."""
    epoch: int = 0
    global_step: int = 0
    step_in_epoch: int = 0


@dataclass
class Loaded:
    path: str
    params: dict
    position: Position


@dataclass
class Entry:
    name: str
    epoch: int
    global_step: int
    step_in_epoch: int = 0
    extra: dict = field(default_factory=dict)


def checkpoint_name(position: Position) -> str:
    # The step is in the name so a mid-epoch checkpoint (SIGTERM) never overwrites an end-of-epoch one.
    return f"{PREFIX}-e{position.epoch:04d}-s{position.global_step:09d}.ckpt"


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory, fsynced and renamed."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".tmp-{os.path.basename(path)}.{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(directory)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def is_own_checkpoint(directory: str, name) -> bool:
    """True for a name incv4 gives a checkpoint (a plain file name, no path parts) that is a regular file inside
    `directory`, not a symlink: only such files are ever loaded or deleted, whatever a manifest says."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        return False
    try:
        return stat.S_ISREG(os.lstat(os.path.join(directory, name)).st_mode)
    except OSError:
        return False


def _foreign_name(directory: str, name) -> bool:
    """A manifest name incv4 never writes: not its naming pattern, or something other than a regular file."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        return True
    return os.path.lexists(os.path.join(directory, name)) and not is_own_checkpoint(directory, name)


def read_manifest(directory: str, log: Callable[[str], None] = print) -> List[Entry]:
    """The manifest's entries, oldest first; [] when it is missing or unreadable (the directory scan then serves).
    Names that are not incv4's own checkpoint files in `directory` (`../x`, absolute paths, symlinks) are left
    out with one warning line, so they are never loaded nor pruned."""
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        entries = [Entry(e["name"], int(e["epoch"]), int(e["global_step"]), int(e.get("step_in_epoch", 0)),
                         dict(e.get("extra", {}))) for e in data["checkpoints"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    foreign = [e.name for e in entries if _foreign_name(directory, e.name)]
    if not foreign:
        return entries
    log(f"warning: {path} names {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} that "
        f"{'is' if len(foreign) == 1 else 'are'} not an incv4 checkpoint file in that folder "
        f"({', '.join(repr(n) for n in foreign[:3])}{', ...' if len(foreign) > 3 else ''}); ignored")
    return [e for e in entries if e.name not in foreign]


def write_manifest(directory: str, entries: List[Entry]) -> None:
    latest = entries[-1].name if entries else None
    data = {"latest": latest,
            "checkpoints": [{"name": e.name, "epoch": e.epoch, "global_step": e.global_step,
                             "step_in_epoch": e.step_in_epoch, "extra": e.extra} for e in entries]}
    atomic_write_text(os.path.join(directory, MANIFEST), json.dumps(data, indent=1) + "\n")


def _scan(directory: str) -> List[Entry]:
    """Complete checkpoints found by name (a final name is only ever given by the rename)."""
    found = []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    for name in names:
        match = _NAME_RE.fullmatch(name)
        if match and is_own_checkpoint(directory, name):
            found.append(Entry(name, int(match.group(1)), int(match.group(2))))
    return found


def candidates(directory: str, log: Callable[[str], None] = print) -> List[Entry]:
    """Checkpoints to resume from, newest first: the manifest's entries plus any complete file it does not list
    (e.g. the manifest rename was lost), without duplicates."""
    by_name = {e.name: e for e in _scan(directory)}
    for entry in read_manifest(directory, log):
        if is_own_checkpoint(directory, entry.name):
            by_name[entry.name] = entry
    return sorted(by_name.values(), key=lambda e: (e.global_step, e.epoch), reverse=True)


def remove_stale_temporaries(directory: str) -> None:
    """Remove half-written temporaries a killed writer left behind."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(".tmp-"):
            _remove_quietly(os.path.join(directory, name))


def set_aside(directory: str) -> Optional[str]:
    """For a fresh start (--no-resume) in a directory holding another run's checkpoints: move them and the
    manifest into `<directory>/replaced-<UTC time>/` (nothing is deleted). Returns that folder, or None."""
    old = [e.name for e in _scan(directory)] + ([MANIFEST] if os.path.exists(os.path.join(directory, MANIFEST))
                                                else [])
    if not old:
        return None
    target = os.path.join(directory, time.strftime("replaced-%Y%m%d-%H%M%S", time.gmtime()))
    os.makedirs(target, exist_ok=True)
    for name in old:
        os.replace(os.path.join(directory, name), os.path.join(target, name))
    return target


def _scalar(value) -> int:
    if hasattr(value, "asnumpy"):
        return int(value.asnumpy())
    return int(value)


def load(path: str) -> Loaded:
    """Load one checkpoint with MindSpore's CRC check. Raises ValueError (MindSpore's) if it is damaged."""
    import mindspore as ms

    params = ms.load_checkpoint(path, crc_check=True)
    position = Position(epoch=_scalar(params.pop(EPOCH_KEY, 0)),
                        global_step=_scalar(params.pop(GLOBAL_STEP_KEY, 0)),
                        step_in_epoch=_scalar(params.pop(STEP_IN_EPOCH_KEY, 0)))
    return Loaded(path, params, position)


def load_newest(directory: str, log: Callable[[str], None] = print) -> Optional[Loaded]:
    """The newest checkpoint in `directory` that loads; damaged ones are skipped with a warning. None if none."""
    for entry in candidates(directory, log):
        path = os.path.join(directory, entry.name)
        try:
            return load(path)
        except Exception as err:  # MindSpore raises ValueError/RuntimeError for damaged files
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            log(f"warning: checkpoint {path} does not load ({reason}); trying the previous one")
    return None


class CheckpointWriter:
    """Writes checkpoints of one run into `directory`, keeping the newest `keep_max`."""

    def __init__(self, directory: str, keep_max: int, metrics=None, log: Callable[[str], None] = print,
                 retain: Optional[Callable[[List[Entry]], tuple]] = None, asynchronous: bool = False):
        """retain(entries oldest first) -> (kept, dropped), kept oldest first (policy.retention); None: the newest
        keep_max."""
        self.directory = directory
        self.keep_max = keep_max
        self.retain = retain
        self.metrics = metrics
        self.log = log
        self.asynchronous = asynchronous  # see save()
        self._in_flight: Optional[threading.Thread] = None
        self._buffers = SnapshotBuffers()

    def warn_if_short_of_space(self, save_obj) -> None:
        """Say at the start, in one line, when the disk cannot hold the checkpoints this run will keep (each is
        the weights plus the optimizer's moments: ~340 MB for InceptionV4), instead of only failing at the first
        save, hours in. A warning, not an error: space may be freed while the run goes on."""
        import shutil

        checkpoint_bytes = sum(int(p.nbytes) for p in save_obj.get_parameters())
        existing = sum(os.path.getsize(os.path.join(self.directory, e.name)) for e in _scan(self.directory))
        # the newest keep_max stay, and a new one is written before the oldest is pruned
        needed = checkpoint_bytes * (self.keep_max + 1) - existing
        probe = os.path.abspath(self.directory)
        while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)  # the directory may not exist yet: ask about the disk it will be on
        try:
            free = shutil.disk_usage(probe).free
        except OSError:
            return
        if free < needed:
            self.log(f"warning: {self.directory} has {_gigabytes(free)} free; each checkpoint takes "
                     f"{_gigabytes(checkpoint_bytes)} and keep_checkpoint_max {self.keep_max} needs up to "
                     f"{_gigabytes(max(needed, 0))} more: checkpoints will fail once the disk is full")

    def save(self, save_obj, position: Position, extra: Optional[dict] = None) -> Optional[str]:
        """Save `save_obj` (a Cell or a parameter list) at `position`. Returns the path, or None when the write
        failed (logged and counted; the previous checkpoint stays the newest).

        Asynchronous writer: the parameters are copied to host memory now (training may change them as soon as
        this returns), the file is written, renamed and listed in the manifest by a background thread, and the
        path it will have is returned at once; a failure is then logged and counted by that thread. One save is
        in flight at most: a save asked for while one is still being written waits for it (never skipped: the
        policy asks only for saves the recipe wants, and the one at SIGTERM or the last epoch is the one to
        resume from). The thread is not a daemon, so a process that returns or exits, also after SIGTERM, ends
        only once the write is complete; a kill mid-write leaves only a temporary file, as a synchronous one."""
        self.wait()
        started = time.monotonic()
        position = dataclasses.replace(position)  # the loop goes on counting steps in its own Position
        if not self.asynchronous:
            return self._write(save_obj, position, extra, started)
        try:
            copy = self._buffers.copy(save_obj)
        except MemoryError:  # no room for a second copy: write from the live parameters, as a synchronous save
            return self._write(save_obj, position, extra, started)
        self._in_flight = threading.Thread(target=self._write_in_background, args=(copy, position, extra, started),
                                           name="incv4-checkpoint-writer", daemon=False)
        self._in_flight.start()
        return os.path.join(self.directory, checkpoint_name(position))

    def prepare(self, save_obj) -> None:
        """Allocate the host memory of the parameters' copy now (e.g. before the first step), so the first save
        stalls training no longer than the next ones."""
        if self.asynchronous:
            self._buffers.copy(save_obj)

    def wait(self) -> None:
        """Return once the save in flight, if any, is complete (listed in the manifest) or its failure logged."""
        thread, self._in_flight = self._in_flight, None
        if thread is not None:
            thread.join()

    def _write_in_background(self, copy: list, position: Position, extra: Optional[dict], started: float) -> None:
        try:  # Linux: a thread has its own nice value; training steps come first when the host CPU is short
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        try:
            self._write(copy, position, extra, started)
        except Exception as err:  # _write reports disk errors itself; anything else must not pass unseen either
            self.log(f"error: checkpoint {checkpoint_name(position)} was not written: {_describe(err)}; "
                     f"training goes on, the previous checkpoint stays the newest")
            if self.metrics is not None:
                self.metrics.checkpoint_failed()

    def _write(self, save_obj, position: Position, extra: Optional[dict], started: float) -> Optional[str]:
        """Write, fsync, rename, then list in the manifest and prune: the manifest names a file only once complete."""
        import mindspore as ms

        name = checkpoint_name(position)
        final = os.path.join(self.directory, name)
        tmp = os.path.join(self.directory, f".tmp-{name}")
        append = {EPOCH_KEY: position.epoch, GLOBAL_STEP_KEY: position.global_step,
                  STEP_IN_EPOCH_KEY: position.step_in_epoch}
        try:
            os.makedirs(self.directory, exist_ok=True)
            _remove_quietly(tmp)  # MindSpore leaves its files read-only; a leftover would block the write
            ms.save_checkpoint(save_obj, tmp, append_dict=append, crc_check=True)
            _fsync_file(tmp)
            os.replace(tmp, final)
            _fsync_dir(self.directory)
            entries = [e for e in read_manifest(self.directory, self.log) if e.name != name
                       and is_own_checkpoint(self.directory, e.name)]
            entries.append(Entry(name, position.epoch, position.global_step, position.step_in_epoch,
                                 dict(extra or {})))
            entries.sort(key=lambda e: (e.global_step, e.epoch))
            kept, dropped = (self.retain(entries) if self.retain is not None
                             else (entries[-self.keep_max:], entries[:-self.keep_max]))
            write_manifest(self.directory, kept)
        except (OSError, RuntimeError, ValueError) as err:
            _remove_quietly(tmp)
            _remove_quietly(tmp[:-len(".ckpt")] + ".tmp")  # MindSpore's own partial file for that name
            self.log(f"error: checkpoint {final} was not written: {_describe(err)}; "
                     f"training goes on, the previous checkpoint stays the newest")
            if self.metrics is not None:
                self.metrics.checkpoint_failed()
            return None
        # Prune only after the manifest no longer names them. Files outside the manifest (from a run whose
        # manifest was lost) are pruned too, by age, so the directory never grows past keep_max.
        listed = {e.name for e in kept}
        for entry in dropped + [e for e in _scan(self.directory) if e.name not in listed
                                and (e.global_step, e.epoch) < (kept[0].global_step, kept[0].epoch)]:
            if is_own_checkpoint(self.directory, entry.name):  # checked again: never follow a name out
                _remove_quietly(os.path.join(self.directory, entry.name))
        if self.metrics is not None:
            self.metrics.checkpoint_saved(time.monotonic() - started)
        return final


def _parameters(save_obj) -> list:
    """(name, parameter) pairs of a Cell or a parameter list, named as ms.save_checkpoint names them."""
    import mindspore as ms

    if isinstance(save_obj, list):
        return [(p.name, p) if isinstance(p, ms.Parameter) else (p["name"], p["data"]) for p in save_obj]
    save_obj.init_parameters_data()
    return [(p.name, p) for p in save_obj.get_parameters()]


class SnapshotBuffers:
    """Host memory for a copy of the parameters, kept from one save to the next: copying into pages already in
    use is several times faster than into new ones (no page faults), at the price of that memory staying
    allocated on rank 0."""

    def __init__(self):
        self._arrays: dict = {}
        self._listed = (None, [])  # (save_obj, its parameters): listing a Cell's parameters walks every cell

    def copy(self, save_obj) -> list:
        """The parameters' values now, in ms.save_checkpoint's list form ({"name", "data"}); copied, not viewed,
        so later training steps cannot change them. Valid until the next copy()."""
        import mindspore as ms
        import numpy as np

        if self._listed[0] is not save_obj:
            self._listed = (save_obj, _parameters(save_obj))
        copies = []
        for name, value in self._listed[1]:
            live = value.asnumpy()  # on the CPU a view of the parameter, on a device its host copy
            buffer = self._arrays.get(name)
            if buffer is None or buffer.shape != live.shape or buffer.dtype != live.dtype:
                buffer = self._arrays[name] = np.empty_like(live, order="C")
            np.copyto(buffer, live)
            copies.append({"name": name, "data": ms.Tensor.from_numpy(buffer)})
        return copies


def _gigabytes(count: int) -> str:
    return f"{count / 1e9:.2f} GB"


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return "no space left on the device"
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror} ({err.filename or ''})".replace(" ()", "")
    text = str(err).strip()
    if "No space left" in text:
        return "no space left on the device"
    return text.splitlines()[0] if text else type(err).__name__
