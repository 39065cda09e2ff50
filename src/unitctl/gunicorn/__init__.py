"""Gunicorn as unitctl reads it: one module per grammar, each mirroring one upstream.

- ``options``: Gunicorn's option table and its argparse-faithful command-line parser.
- ``shellwords``: ``sh -c`` and shlex word splitting with raw spans.
- ``launchers``: finding Gunicorn in an ExecStart= command (direct, ``python -m``, env, poetry/pipenv/uv, sh -c).
- ``workers``: the worker count (a number or ``auto``, capped by ``--max-workers``).
- ``settings``: the effective settings (defaults, config file, GUNICORN_CMD_ARGS, command line).

This package re-exports what the rest of unitctl imports, so callers write ``from unitctl.gunicorn import X``.
"""

from __future__ import annotations

from unitctl.gunicorn.launchers import (
    Found,
    Invocation,
    ShellScript,
    describe_refusal_for,
    find_gunicorn,
    find_invocation,
    identify_server,
)
from unitctl.gunicorn.options import (
    GUNICORN_VERSION,
    GunicornArgs,
    GunicornArgsError,
    OptionSpec,
    OptionUse,
    parse_args,
    spec,
)
from unitctl.gunicorn.settings import (
    ENV_FILE_LIMIT,
    ConfigFacts,
    ReadFile,
    Settings,
    Sourced,
    default_read_file,
    effective_settings,
    parse_config_file,
    parse_env_file,
    unit_environment,
)
from unitctl.gunicorn.shellwords import ShellSyntaxError, ShellWord, shell_split, shlex_words
from unitctl.gunicorn.workers import auto_workers, resolve_workers

__all__ = [
    "ENV_FILE_LIMIT",
    "GUNICORN_VERSION",
    "ConfigFacts",
    "Found",
    "GunicornArgs",
    "GunicornArgsError",
    "Invocation",
    "OptionSpec",
    "OptionUse",
    "ReadFile",
    "Settings",
    "ShellScript",
    "ShellSyntaxError",
    "ShellWord",
    "Sourced",
    "auto_workers",
    "default_read_file",
    "describe_refusal_for",
    "effective_settings",
    "find_gunicorn",
    "find_invocation",
    "identify_server",
    "parse_args",
    "parse_config_file",
    "parse_env_file",
    "resolve_workers",
    "shell_split",
    "shlex_words",
    "spec",
    "unit_environment",
]
