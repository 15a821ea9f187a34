"""The `torch-otel` command line: `run` starts a program with the bridge installed; `doctor` checks the setup;
`report` summarises OTLP JSON files."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch_otel import environment_variables as env
from torch_otel.capture.torch_import import TORCH_LOGS, check_torch_logs, program_search_path
from torch_otel.capture.torch_logs import TorchLogsError, closest_names
from torch_otel.config.export_config import export_plan, sdk_disabled
from torch_otel.config.settings import Settings, SettingsError
from torch_otel.console import say  # every message of `torch-otel run`: stderr or nowhere

BOOTSTRAP_DIR = Path(__file__).resolve().parent / "_bootstrap"
EXIT_BAD_SETTING = 2
EXIT_NOT_FOUND = 127
SETTING_PREFIX = "TORCH_OTEL_"


def child_environment(environ: dict[str, str]) -> dict[str, str]:
    """The environment that makes every Python child load torch-otel's sitecustomize first."""
    env = dict(environ)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(BOOTSTRAP_DIR) + (os.pathsep + existing if existing else "")
    return env


def unknown_settings(environ: Mapping[str, str]) -> list[str]:
    """What to say about each ``TORCH_OTEL_*`` variable that is not a torch-otel setting (and so is ignored), with
    the closest setting's name when one is close: ``TORCH_OTEL_SPAN is not a torch-otel setting and is ignored
    (did you mean TORCH_OTEL_SPANS?)``. Shared by `torch-otel run` and `torch-otel doctor`."""
    known = {name[len(SETTING_PREFIX) :]: name for name in env.ALL}
    notes = []
    for name in sorted(k for k in environ if k.startswith(SETTING_PREFIX) and k not in env.ALL):
        close = closest_names(name[len(SETTING_PREFIX) :], known, limit=1)
        hint = f" (did you mean {known[close[0]]}?)" if close else ""
        notes.append(f"{name} is not a torch-otel setting and is ignored{hint}")
    return notes


def warn_unknown_settings(environ: Mapping[str, str]) -> None:
    """One line on stderr naming every unknown ``TORCH_OTEL_*`` variable; said by `torch-otel run` only, so once
    per run however many processes the program starts."""
    notes = unknown_settings(environ)
    if notes:
        say("; ".join(notes) + ". Run `torch-otel doctor` for the settings and their values.")


def run(command: Sequence[str]) -> int:
    if not command:
        say("name the program to run, e.g. torch-otel run -- python train.py")
        return EXIT_BAD_SETTING
    environ = child_environment(dict(os.environ))
    warn_unknown_settings(os.environ)
    try:
        if not sdk_disabled():
            Settings.from_env()
            plan = export_plan()
            check_torch_logs(os.environ.get(TORCH_LOGS), program_search_path(command))
            if plan.file_path is not None:
                environ[env.TORCH_OTEL_FILE] = str(plan.file_path.absolute())
                announce_file(plan.file_path)
    except (SettingsError, TorchLogsError) as error:
        say(str(error))
        return EXIT_BAD_SETTING
    try:
        os.execvpe(command[0], list(command), environ)
    except OSError as error:
        say(f"cannot start {command[0]!r}: {error.strerror}")
        return EXIT_NOT_FOUND
    return 0  # unreachable: exec replaced this process


def announce_file(path: Path) -> None:
    """Said once per run, by the process the user started; every process of the run that has something to export
    appends to this one file, and a run that exports nothing leaves none."""
    say(
        f"no OTLP endpoint configured, so traces, logs and metrics from this run go to {path}, created when a "
        f"process has something to export (read it with `torch-otel report {path}`; set "
        "OTEL_EXPORTER_OTLP_ENDPOINT to send to a collector instead)."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torch-otel", description="OpenTelemetry for torch.compile, driven by TORCH_LOGS."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run a program with torch's logs exported over OTLP")
    run_parser.add_argument("program", nargs=argparse.REMAINDER, help="the command, after --")
    commands.add_parser(
        "doctor",
        add_help=False,
        help="explain and check the TORCH_LOGS, TORCH_OTEL_* and OTEL_* setup (--list, --no-check)",
    )
    commands.add_parser(
        "report",
        add_help=False,
        help="summarise compiles, recompiles, graph breaks, caches and artifacts from OTLP JSON files (--html OUT)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["doctor"]:
        from torch_otel.tools import doctor

        return doctor.main(argv[1:])
    if argv[:1] == ["report"]:
        from torch_otel.tools import report

        return report.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "run":
        program = args.program[1:] if args.program[:1] == ["--"] else args.program
        return run(program)
    return EXIT_BAD_SETTING


if __name__ == "__main__":
    sys.exit(main())
