"""Read offline W&B runs back: the ``.wandb`` file that ``WANDB_MODE=offline`` writes under
``<run dir>/wandb/offline-run-<time>-<id>/``, without network, login or ``wandb sync``.

The file is a LevelDB-style log (https://github.com/google/leveldb/blob/main/doc/log_format.md) of protobuf
``wandb.proto.wandb_internal_pb2.Record`` messages, after a 7-byte header (``:W&B``, magic ``0xBEE1``, version 0).
Older wandb releases shipped a Python reader (``wandb.sdk.internal.datastore``); wandb 0.31 writes the file from its
Go core and ships none, so this module reads the log itself and takes only the protobuf schema from wandb.

    python -m nerfexp.loggers.wandb_offline <run dir>      # prints the run's id, group, tags and history rows
"""
from __future__ import annotations

import argparse
import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FILE_HEADER = struct.Struct("<4sHB")       # ident, magic, version
FILE_IDENT, FILE_MAGIC, FILE_VERSION = b":W&B", 0xBEE1, 0
RECORD_HEADER = struct.Struct("<IHB")      # crc32 of (type, data), data length, type
BLOCK_LEN = 32768                          # records never straddle a block; a short block tail is zero padding
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class OfflineRunError(ValueError):
    """No offline run where one was expected, or a ``.wandb`` file that is not one; the message names the path."""


def iter_chunks(path: Path) -> Iterator[bytes]:
    """The raw records (serialized protobufs) of a ``.wandb`` file, in write order.

    A record cut short at the end of the file (a run killed while writing) ends the iteration quietly; a checksum
    mismatch before that raises :class:`OfflineRunError`.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < FILE_HEADER.size:
        raise OfflineRunError(f"{path}: too short for a .wandb file ({len(data)} bytes)")
    ident, magic, version = FILE_HEADER.unpack_from(data, 0)
    if ident != FILE_IDENT or magic != FILE_MAGIC or version != FILE_VERSION:
        raise OfflineRunError(f"{path}: not a .wandb file (header {ident!r} {magic:#x} v{version})")
    offset, pending = FILE_HEADER.size, None
    while True:
        room = BLOCK_LEN - offset % BLOCK_LEN
        if room < RECORD_HEADER.size:        # block trailer: zero padding
            offset += room
            continue
        if offset + RECORD_HEADER.size > len(data):
            return
        crc, length, kind = RECORD_HEADER.unpack_from(data, offset)
        if crc == 0 and length == 0 and kind == 0:   # preallocated / padded tail
            return
        start, at = offset + RECORD_HEADER.size, offset
        chunk = data[start:start + length]
        if len(chunk) < length:
            return
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:
            raise OfflineRunError(f"{path}: corrupt record at byte {at} (checksum mismatch)")
        offset = start + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = [chunk]
        elif kind in (MIDDLE, LAST) and pending is not None:
            pending.append(chunk)
            if kind == LAST:
                yield b"".join(pending)
                pending = None
        else:
            raise OfflineRunError(f"{path}: unexpected record type {kind} at byte {at}")


def iter_records(path: Path) -> Iterator:
    """The ``wandb_internal_pb2.Record`` messages of a ``.wandb`` file."""
    from wandb.proto import wandb_internal_pb2

    for chunk in iter_chunks(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        yield record


def offline_run_dirs(run_dir: Path) -> list[Path]:
    """The ``offline-run-*`` folders of a run dir, oldest first (their names start with the start time).

    ``run_dir`` may be the training run dir, its ``wandb/`` folder, or an ``offline-run-*`` folder itself.
    """
    run_dir = Path(run_dir)
    if run_dir.name.startswith("offline-run-"):
        return [run_dir]
    for base in (run_dir / "wandb", run_dir):
        found = sorted(p for p in base.glob("offline-run-*") if p.is_dir())
        if found:
            return found
    return []


def wandb_file(run_dir: Path) -> Path:
    """The ``.wandb`` file of the latest offline run under ``run_dir`` (see :func:`offline_run_dirs`)."""
    return wandb_files(run_dir)[-1]


def wandb_files(run_dir: Path) -> list[Path]:
    """The ``.wandb`` files of the latest offline run under ``run_dir``, oldest first.

    A resumed run (``logger.run_id``) writes a new ``offline-run-<time>-<id>`` folder with the same id; all folders of
    the latest folder's id belong to the run. Given an ``offline-run-*`` folder, just its own file.
    """
    runs = offline_run_dirs(run_dir)
    if not runs:
        raise OfflineRunError(f"{run_dir}: no wandb/offline-run-* folder (was the run logged with logger=wandb "
                              "and WANDB_MODE=offline?)")
    run_id = runs[-1].name.rsplit("-", 1)[-1]
    files = []
    for folder in (p for p in runs if p.name.rsplit("-", 1)[-1] == run_id):
        found = sorted(folder.glob("*.wandb"))
        if not found:
            raise OfflineRunError(f"{folder}: no .wandb file in the offline run folder")
        files.append(found[0])
    return files


def is_complete(path: Path) -> bool:
    """Whether a ``.wandb`` file holds its run's exit record (the run was finished and the file flushed)."""
    try:
        return any(r.WhichOneof("record_type") == "exit" for r in iter_records(path))
    except (OSError, OfflineRunError):
        return False


def wait_until_complete(path: Path, timeout_s: float = 15.0, poll_s: float = 0.05) -> bool:
    """Wait until ``path`` holds its exit record; returns False after ``timeout_s`` without one.

    wandb 0.31's ``run.finish()`` returns before its core process has flushed an offline run's ``.wandb`` file
    (seen here as a file of only its 7-byte header for ~0.1 s), so a reader right after ``finish`` must wait.
    """
    deadline = time.monotonic() + timeout_s
    while not is_complete(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


def _set_nested(row: dict, keys: list[str], value) -> None:
    for key in keys[:-1]:
        row = row.setdefault(key, {})
    row[keys[-1]] = value


def _item_value(item):
    """The value of a history/summary/config item: ``value_json`` in wandb 0.31, typed fields in some versions."""
    if item.value_json:
        return json.loads(item.value_json)
    which = item.WhichOneof("value") if "value" in type(item).DESCRIPTOR.oneofs_by_name else None
    return None if which in (None, "none") else getattr(item, which)


def _item_keys(item) -> list[str]:
    return [item.key] if item.key else list(item.nested_key)


def _apply_updates(target: dict, updates) -> None:
    for item in updates:
        keys = _item_keys(item)
        if keys:
            _set_nested(target, keys, _item_value(item))


@dataclass
class OfflineRun:
    """What an offline run recorded. ``history`` rows carry wandb's ``_step``, ``_runtime`` and ``_timestamp``;
    media (images, tables) appear as their JSON descriptors (``{"_type": "image-file", "path": ...}``). ``path`` is
    the ``.wandb`` file of the run's latest part."""

    path: Path
    run_id: str = ""
    project: str = ""
    entity: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    exit_code: int | None = None


def read_run(run_dir: Path) -> OfflineRun:
    """Read the latest offline W&B run under ``run_dir`` (a training run dir, its ``wandb/`` or the run folder).

    The parts of a resumed run are read in order. A later part may log steps the run already has (a training
    resumed from an earlier checkpoint, or ``evaluate.py`` logging at the checkpoint's step): such a row is merged
    into the row of that step, its values winning, so nothing logged is lost. (W&B's server may instead drop rows a
    resumed run logs at or before its last step.)
    """
    files = wandb_files(run_dir)
    run = OfflineRun(path=files[-1])
    rows: dict[int, dict] = {}
    for path in files:
        for record in iter_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                r = record.run
                run.run_id, run.project, run.entity = r.run_id, r.project, r.entity
                run.name, run.group, run.job_type, run.tags = r.display_name, r.run_group, r.job_type, list(r.tags)
                _apply_updates(run.config, r.config.update)
            elif kind == "config":
                _apply_updates(run.config, record.config.update)
            elif kind == "history":
                row: dict = {}
                _apply_updates(row, record.history.item)
                row.setdefault("_step", record.history.step.num)
                rows.setdefault(row["_step"], {}).update(row)
            elif kind == "summary":
                _apply_updates(run.summary, record.summary.update)
            elif kind == "exit":
                run.exit_code = record.exit.exit_code
    run.history = [rows[step] for step in sorted(rows)]
    run.config.pop("_wandb", None)
    run.summary.pop("_wandb", None)
    return run


def read_history(run_dir: Path) -> list[dict]:
    """The history rows (one dict per committed step, in order) of the latest offline W&B run under ``run_dir``
    (all its parts when it was resumed; see :func:`read_run`)."""
    return read_run(run_dir).history


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print an offline W&B run read back from its .wandb file.")
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    run = read_run(args.run_dir)
    print(f"{run.path}\nid {run.run_id}  project {run.project}  group {run.group or '-'}  tags {run.tags}")
    for row in run.history:
        print(json.dumps({k: v for k, v in row.items() if not k.startswith("_") or k == "_step"}))


if __name__ == "__main__":
    main()
