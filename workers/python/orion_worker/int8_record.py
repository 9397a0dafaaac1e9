"""The record of an INT8 model's accuracy check, as the worker reads it.

Owns reading `<int8 model>.check.json` (written by `int8_check`): the worker
offers an INT8 variant to the runtime choice only when its record passed and
names the very files it would run; a model changed since is unchecked. It
never runs the check and never decides speed.
"""

from __future__ import annotations

import json
from pathlib import Path

from .runtime_choice import file_digest

# How `checked` begins when the check ran and failed (not a fault: a verdict).
FAILED = "its accuracy check failed: "


def record_path(int8_path: str | Path) -> Path:
    p = Path(int8_path)
    return p.with_name(p.stem + ".check.json")


def checked(fp32_path: str, int8_path: str) -> tuple[bool, str]:
    """Whether `int8_path` passed its check against `fp32_path` (the very
    files), and in words why not."""
    path = record_path(int8_path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return False, f"no accuracy check record ({path.name})"
    except (OSError, ValueError) as e:
        return False, f"accuracy check record {path.name} unreadable ({e})"
    if not isinstance(record, dict):
        return False, f"accuracy check record {path.name} is not an object"
    try:
        if record.get("fp32_sha256") != file_digest(fp32_path) or record.get("int8_sha256") != file_digest(int8_path):
            return False, "the models changed since their accuracy check"
    except OSError as e:
        return False, f"cannot read the model files ({e})"
    if record.get("passed") is not True:
        return False, FAILED + "; ".join(map(str, record.get("failures") or []))
    return True, "accuracy checked " + str(record.get("checked_at", "?"))
