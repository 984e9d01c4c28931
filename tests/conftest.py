"""Shared fixtures: a version-revealing test server on 127.0.0.1 (see ``tests/helpers.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.helpers import VersionServer


@pytest.fixture
def version_server() -> Iterator[Callable[..., VersionServer]]:
    """A factory: ``srv = version_server(switch_at=..., v2_share=..., error_share=...,
    delay_s=..., stall=...)`` starts a server (stopped at teardown); ``srv.url``."""
    started: list[VersionServer] = []

    def start(**config: Any) -> VersionServer:
        server = VersionServer(**config).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
