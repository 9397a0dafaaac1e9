"""How a worker process logs: lines on stderr with the level prefixes the
daemon maps to its own levels, and errors said on one short line.

Owns the root logger's handler of the process it runs in. It never writes to
stdout (the protocol's).
"""

from __future__ import annotations

import logging
import sys


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines on stderr with the level prefixes the daemon maps to its levels."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """An error's text on one line, at most `limit` characters (runtimes
    say what went wrong over many lines)."""
    return " ".join(str(error).split())[:limit]
