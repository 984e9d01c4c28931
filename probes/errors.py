"""The small tree of errors above the sample layer.

A failed *request* is never an exception: it is a sample row with ``status`` 0 or an HTTP
error status and an ``error`` class. These exceptions are for what stops a command: a bad
flag or config value, a target or platform that cannot be used. They carry the process exit
code; the CLI entry point (``probes.cli.main``) is the one place that turns them into exits.
"""

from __future__ import annotations


class ProbesError(Exception):
    """Base of every error proton-probe raises on purpose."""

    exit_code = 2


class ConfigError(ProbesError):
    """A flag, environment variable, config key or record field has a bad value.

    The message names the flag or key and shows the expected form.
    """

    exit_code = 2


class TargetError(ProbesError):
    """The target or platform could not be used: unreachable, unauthorized, not found."""

    exit_code = 3


class RunDirError(ConfigError):
    """A run directory is missing, unreadable or not a proton-probe run."""
