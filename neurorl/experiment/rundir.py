"""Run directories: atomic file writes and the files every run leaves behind.

Layout of a run directory::

    config.toml         the resolved configuration
    metrics.csv         one row per evaluation
    replay_checks.csv   one row per resilient-replay check
    summary.json        final figures
    actor.pt            final actor weights and what is needed to rebuild it

Every file is written to a temporary name in the same directory and renamed into place, so an
interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch


def _file_mode() -> int:
    # mkstemp creates files with mode 0600; run files get the mode open() would give them.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, _file_mode())
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(_json_safe(data), indent=2, sort_keys=True) + "\n")


def write_csv_atomic(path: Path, rows: Iterable[dict[str, Any]], columns: list[str]) -> None:
    """Write all ``rows`` with the given column order (missing values left empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    write_text_atomic(path, buffer.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def save_torch_atomic(path: Path, obj: Any) -> None:
    """Save ``obj`` with torch.save through an atomic rename (loadable with weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def to_toml(config: dict[str, Any]) -> str:
    """Render a flat configuration dict as TOML (None values are left out: TOML has no null)."""
    lines = []
    for key, value in config.items():
        if value is None:
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats by None so summary.json stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value
