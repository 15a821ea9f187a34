"""Saves and restores torch's global logging state around a test: logger levels, handlers, propagation,
log_state, the registry and TORCH_LOGS."""

from __future__ import annotations

import copy
import logging
import os
from contextlib import contextmanager
from typing import Iterator


def _torch_logger_names(internal) -> set[str]:
    registry = internal.log_registry
    return (
        registry.get_log_qnames()
        | registry.get_artifact_log_qnames()
        | registry.get_child_log_qnames()
        | {internal.trace_log.name}
    )


@contextmanager
def preserved_torch_logging() -> Iterator[None]:
    import torch._logging as torch_logging
    import torch._logging._internal as internal

    names = _torch_logger_names(internal)
    loggers = {name: logging.getLogger(name) for name in names}
    saved = {name: (log.level, log.propagate, list(log.handlers)) for name, log in loggers.items()}
    saved_state = copy.deepcopy(internal.log_state)
    saved_registry = {key: copy.copy(value) for key, value in vars(internal.log_registry).items()}
    saved_init = (internal._init_logs, torch_logging._init_logs)
    saved_env = os.environ.get("TORCH_LOGS")
    try:
        yield
    finally:
        internal._init_logs, torch_logging._init_logs = saved_init
        registry = internal.log_registry
        artifact_loggers = registry.get_artifact_log_qnames()  # modules imported meanwhile stay registered
        for key, value in saved_registry.items():
            setattr(registry, key, value)
        registry.artifact_log_qnames = artifact_loggers
        internal._set_log_state(saved_state)
        for name in _torch_logger_names(internal) - names:
            log = logging.getLogger(name)
            log.handlers = []
            log.setLevel(logging.NOTSET)
            log.propagate = True
            if name in artifact_loggers:
                internal.configure_artifact_log(log)
        for name, (level, propagate, handlers) in saved.items():
            log = loggers[name]
            log.setLevel(level)
            log.propagate = propagate
            log.handlers = handlers
        if saved_env is None:
            os.environ.pop("TORCH_LOGS", None)
        else:
            os.environ["TORCH_LOGS"] = saved_env
        import torch._dynamo

        torch._dynamo.reset()
