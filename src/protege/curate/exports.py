"""Where curated datasets were written, so that deleting a call also deletes its copies there.

`curate_calls(out_dir=...)` (`protege curate --out DIR`) records every folder it writes in
`$PROTEGE_HOME/curated.json`. `drop_from_exports` rewrites the `<task>/train.jsonl` and
`<task>/test.jsonl` files of those folders without the given calls (by id, or older than a time),
each file replaced atomically, and brings `report.json`'s split counts up to date. Files that
`protege export` writes, and copies made by hand, are not tracked: they are the operator's.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import orjson

from protege.store.base import protege_home

log = logging.getLogger(__name__)

REGISTRY = "curated.json"
SPLITS = ("train", "test")


def _registry() -> Path:
    return protege_home() / REGISTRY


def curated_folders() -> list[Path]:
    """The curated folders recorded so far that still exist."""
    try:
        folders = json.loads(_registry().read_text())
    except (OSError, ValueError):
        return []
    return [Path(f) for f in folders if isinstance(f, str) and Path(f).is_dir()]


def register_export(out_dir: str | Path) -> None:
    """Remember `out_dir` as holding curated copies of calls."""
    folder = str(Path(out_dir).resolve())
    known = [str(f) for f in curated_folders()]
    if folder in known:
        return
    path = _registry()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([*known, folder], indent=1))
        tmp.replace(path)
    except OSError as e:  # the datasets are written; only their record is missing
        log.error("Cannot record %s in %s (%s): `protege forget` and retention will not find the calls copied "
                  "there. Make PROTEGE_HOME writable, or delete that folder when its calls must go.", folder, path, e)


def _rewrite(path: Path, ids: set[str] | None, before: float | None) -> int:
    """Drop the lines of `path` whose call is in `ids` or started before `before`; returns how many."""
    kept, dropped = [], 0
    for line in path.read_bytes().splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            kept.append(line)
            continue
        ts = row.get("ts") if isinstance(row, dict) else None
        if isinstance(row, dict) and ((ids is not None and row.get("id") in ids)
                                      or (before is not None and isinstance(ts, (int, float)) and ts < before)):
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(line + b"\n" for line in kept))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    return dropped


def drop_from_exports(ids: set[str] | None = None, before: float | None = None,
                      folders: list[Path] | None = None) -> dict[str, int]:
    """Remove calls (`ids`, and/or every call older than `before`) from the curated folders; returns
    {file: lines removed} for the files that changed."""
    changed: dict[str, int] = {}
    for folder in curated_folders() if folders is None else folders:
        for path in sorted(folder.glob("*/*.jsonl")):
            if path.stem not in SPLITS:
                continue
            try:
                n = _rewrite(path, ids, before)
            except OSError as e:
                log.error("Cannot rewrite the curated file %s (%s); the calls it holds were not removed from it.", path, e)
                continue
            if n:
                changed[str(path)] = n
        if any(str(folder) in p for p in changed):
            _refresh_report(folder)
    return changed


def _refresh_report(folder: Path) -> None:
    report = folder / "report.json"
    if not report.is_file():
        return
    data = json.loads(report.read_text())
    data["splits"] = {task.name: {split: sum(1 for line in (task / f"{split}.jsonl").read_bytes().splitlines() if line)
                                  for split in SPLITS if (task / f"{split}.jsonl").is_file()}
                      for task in sorted(folder.iterdir()) if task.is_dir()}
    report.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
