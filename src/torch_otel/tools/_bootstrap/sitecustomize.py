"""Loaded by `torch-otel run` in every Python child. It runs any other sitecustomize, takes its own folder off
``sys.path`` and waits for ``import torch``; nothing else happens in a process that never imports torch.

- Torch hands its helper processes (inductor's CPU-feature probes, its compile workers) ``sys.path`` as their
  PYTHONPATH (``torch._inductor.utils.python_subprocess_env``). With this folder gone from ``sys.path``, they start
  without torch-otel. Children the program starts itself inherit the PYTHONPATH of the environment and keep it.
- The start is wrapt's post-import hook for ``torch``. Importing wrapt costs about 57 ms here (it loads asyncio,
  inspect and importlib.metadata), three times the budget of a child that never imports torch, so wrapt is loaded
  only when something asks the import system for ``torch``.
"""

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _run_next_sitecustomize() -> None:
    search_path = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", search_path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def _leave_sys_path() -> None:
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]


def _say(message: str) -> None:
    """torch_otel.console.say, without importing the package: a line on stderr, if there is one."""
    try:
        sys.stderr.write(f"torch-otel: {message}\n")
    except (AttributeError, OSError, ValueError):
        pass


def _start_torch_otel(torch_module: object) -> None:
    try:
        from torch_otel.tools import autostart
    except Exception as error:  # noqa: BLE001 - never raise into the program's `import torch`
        _say(f"not importable from {sys.executable} ({error}); running without it.")
        return
    autostart.start_after_torch_import()


class _LoadWraptOnTorchImport:
    """A meta path finder that answers nothing. When torch is asked for, it steps aside, registers torch-otel's
    start as wrapt's post-import hook for torch and lets wrapt's finder handle that import."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201 - the importlib protocol
        if fullname != "torch":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            return None
        try:
            import wrapt.importer

            wrapt.importer.register_post_import_hook(_start_torch_otel, "torch")
        except Exception as error:  # noqa: BLE001 - the program runs without torch-otel rather than not at all
            _say(f"cannot watch for `import torch` ({error}); running without torch-otel.")
            return None
        for finder in sys.meta_path:
            if isinstance(finder, wrapt.importer.ImportHookFinder):
                return finder.find_spec(fullname, path, target)
        return None


_run_next_sitecustomize()
_leave_sys_path()
if "torch" not in sys.modules:
    sys.meta_path.insert(0, _LoadWraptOnTorchImport())
