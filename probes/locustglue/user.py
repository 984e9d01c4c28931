"""``InvokeUser``: the Locust user that sends the configured request to the invoke URL."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import urlsplit

from locust import FastHttpUser, task
from locust.env import Environment

from probes.locustglue import CALLER_KEY
from probes.locustglue.wiring import state_of
from probes.run import worker_name

_USER_IDS = itertools.count(1)


class InvokeUser(FastHttpUser):
    """Sends the configured request (``--probes-*``) to the invoke URL (``--host``), in a loop.

    The bearer token comes from the environment variable named by ``--probes-token-env``
    and is only ever put in the request's headers.
    """

    def __init__(self, environment: Environment) -> None:
        spec = state_of(environment).spec_for(environment.host or self.host)
        self.network_timeout = spec.timeout
        self.connection_timeout = spec.timeout
        super().__init__(environment)
        self._spec = spec
        # An origin without a path ("http://h:1") must still request "/".
        self._url = spec.url if urlsplit(spec.url).path else spec.url + "/"
        self._headers = spec.request_headers()
        self._body = spec.body
        self._context = {CALLER_KEY: f"{worker_name('locust')}/u{next(_USER_IDS)}"}

    def context(self) -> dict[str, Any]:
        """The request context: names this user as the caller of its samples."""
        return self._context

    @task
    def invoke(self) -> None:
        spec = self._spec
        self.client.request(
            spec.method,
            self._url,
            name=spec.name,
            data=self._body,  # type: ignore[arg-type]  # bytes are sent as they are
            headers=self._headers,
        )
