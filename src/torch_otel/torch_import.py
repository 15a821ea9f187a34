"""Imports torch with TORCH_LOGS checked first, so a bad value is reported clearly instead of crashing the import."""

from __future__ import annotations

import os
import sys

from torch_otel.torch_logs import parse_torch_logs

TORCH_LOGS = "TORCH_LOGS"


def import_torch_checked() -> None:
    """Import torch; if TORCH_LOGS is set, validate it with ``parse_torch_logs`` before torch applies it.

    Raises ``TorchLogsError`` for a bad value. If torch was already imported, TORCH_LOGS was already accepted.
    """
    if "torch" in sys.modules:
        return
    raw = os.environ.get(TORCH_LOGS)
    if raw is None:
        import torch  # noqa: F401

        return
    del os.environ[TORCH_LOGS]
    try:
        import torch  # noqa: F401
    finally:
        os.environ[TORCH_LOGS] = raw
    parse_torch_logs(raw)
    import torch._logging._internal as internal

    internal._init_logs()
