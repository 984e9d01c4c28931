"""A small client for the Workload API control plane (``platform/workload-api.md``).

Synchronous httpx: the rollout watcher polls from a thread, and the CLI makes a handful of
calls, so nothing here needs an event loop. Results are frozen dataclasses with the fields
proton-probe uses plus ``raw`` (the JSON object as the platform sent it).

Errors are translated once, here:

=========  ==============================================================================
status     raised
=========  ==============================================================================
401, 403   ``TargetError`` "unauthorized: check the token in $VAR"
404        ``TargetError`` naming the workload, proton or artifact id (``get_replacement``
           returns None instead: the platform's documented "no active replacement")
400, 409,  ``RejectedError`` carrying the platform's ``detail`` text, e.g. "There is already
422        a replacement in progress"
5xx        retried for idempotent calls, then ``TargetError``
transport  connect errors retried (for every call: nothing was sent), then ``TargetError``
=========  ==============================================================================

The bearer token is read from the environment variable named by ``token_env`` and never
logged, printed or shown in ``repr``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from probes.errors import ProbesError, TargetError
from probes.settings import DEFAULT_TOKEN_ENV, mask_url, parse_url

API_PREFIX = "/api/v2"
#: Replacement statuses after which nothing more happens to the record.
TERMINAL_REPLACEMENT = frozenset({"completed", "errored", "canceled", "failed"})
#: Connect-level failures: the request never reached the server, so any call may be retried.
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Failures after the request may have been sent: only idempotent calls are retried.
_TRANSPORT_ERRORS = (httpx.TransportError,)


class RejectedError(ProbesError):
    """The platform understood the request and refused it (400, 409, 422).

    ``detail`` is the platform's own explanation, e.g. "a replacement is already in
    progress". Exit code 3: the platform could not be used for what was asked.
    """

    exit_code = 3

    def __init__(self, message: str, *, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def parse_time(value: Any) -> float | None:
    """ISO 8601 (``…Z`` or with an offset) → epoch seconds; None for null or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:  # the platform speaks UTC; a naive stamp is UTC too
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def artifact_label(name: Any, version: Any) -> str:
    """The version label of an artifact: ``name:version``; a draft (no version) → ``name:draft``."""
    return f"{name}:{'draft' if version is None else version}"


@dataclass(frozen=True)
class Artifact:
    """What a proton runs; ``label`` is what the proton app reveals as its version."""

    id: str
    name: str
    version: int | None
    status: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def label(self) -> str:
        return artifact_label(self.name, self.version)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Artifact:
        return cls(
            id=str(data.get("id")),
            name=str(data.get("name") or data.get("id")),
            version=data.get("version"),
            status=data.get("status"),
            raw=data,
        )


@dataclass(frozen=True)
class Replacement:
    """An active (or just finished) replacement record."""

    id: str
    workload_id: str | None
    status: str
    candidate_artifact_id: str | None
    candidate_proton_ids: tuple[str, ...]
    previous_proton_ids: tuple[str, ...]
    message: str | None
    switched_at: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def switched_ts(self) -> float | None:
        """``switchedAt`` as epoch seconds (None before the switch)."""
        return parse_time(self.switched_at)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_REPLACEMENT

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Replacement:
        return cls(
            id=str(data.get("id")),
            workload_id=data.get("workloadId"),
            # a history record of the simulator says how it ended in ``outcome`` (a canceled
            # one keeps the documented status ``canceling``); the platform sends no outcome
            status=str(data.get("outcome") or data.get("status") or "unknown"),
            candidate_artifact_id=data.get("candidateArtifactId") or data.get("artifactId"),
            candidate_proton_ids=tuple(data.get("candidateProtonIds") or ()),
            previous_proton_ids=tuple(data.get("previousProtonIds") or ()),
            message=data.get("message"),
            switched_at=data.get("switchedAt"),
            raw=data,
        )


@dataclass(frozen=True)
class Proton:
    """One runtime instance of an artifact; ``role`` is active, candidate or None."""

    id: str
    workload_id: str | None
    artifact_id: str | None
    role: str | None
    status: str
    running_since: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Proton:
        return cls(
            id=str(data.get("id")),
            workload_id=data.get("workloadId"),
            artifact_id=data.get("artifactId"),
            role=data.get("role"),
            status=str(data.get("status") or "unknown"),
            running_since=data.get("runningSince"),
            raw=data,
        )


@dataclass(frozen=True)
class Workload:
    """A Workload: stable id and invoke endpoint around its active proton."""

    id: str
    name: str | None
    status: str
    artifact_id: str | None
    proton_id: str | None
    endpoint: str | None
    replacement_status: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def artifact(self) -> Artifact | None:
        """The summary of the active artifact embedded in the workload, when present."""
        data = self.raw.get("artifact")
        return Artifact.from_json(data) if isinstance(data, Mapping) and data.get("id") else None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Workload:
        replacement = data.get("replacement")
        return cls(
            id=str(data.get("id")),
            name=data.get("name"),
            status=str(data.get("status") or "unknown"),
            artifact_id=data.get("artifactId"),
            proton_id=data.get("protonId"),
            endpoint=data.get("endpoint"),
            replacement_status=replacement.get("status")
            if isinstance(replacement, Mapping)
            else None,
            raw=data,
        )


@dataclass(frozen=True)
class Retry:
    """Bounded exponential backoff: at most ``attempts`` tries within ``budget_s`` seconds."""

    attempts: int = 4
    base_s: float = 0.2
    factor: float = 2.0
    max_delay_s: float = 2.0
    budget_s: float = 8.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        return min(self.max_delay_s, self.base_s * self.factor ** (attempt - 1))


def normalize_api_base(api: str, place: str = "api") -> str:
    """``http://host:port`` or ``…/api/v2`` → the API base ending in ``/api/v2`` (no slash);
    ConfigError naming ``place`` when it is not an http(s) URL."""
    url = parse_url(api, place).rstrip("/")
    if not urlsplit(url).path:
        url += API_PREFIX
    return url


class WorkloadClient:
    """Client of one Workload API control plane.

    ``api`` is the API base (``https://app.datarobot.com/api/v2``; a bare origin gets
    ``/api/v2`` appended). Use as a context manager or call ``close``.
    """

    def __init__(
        self,
        api: str,
        *,
        token_env: str = DEFAULT_TOKEN_ENV,
        timeout: float = 10.0,
        retry: Retry | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = 100,
        place: str = "api",
    ) -> None:
        self.base = normalize_api_base(api, place)
        self.page_size = page_size
        self.token_env = token_env
        self.retry = retry or Retry()
        self._sleep = sleep
        headers = {"Accept": "application/json"}
        token = os.environ.get(token_env, "").strip()
        self._token_set = bool(token)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base + "/", headers=headers, timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"WorkloadClient({self.masked_base!r}, token_env={self.token_env!r})"

    @property
    def masked_base(self) -> str:
        """The API base with any secret in it masked, for manifests and messages."""
        return mask_url(self.base)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WorkloadClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport, retries, error mapping ---------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """One call with retries; returns a 2xx or 404 response, raises for everything else."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            retryable: str | None = None
            try:
                response = self._http.request(method, path, params=params, json=json)
            except _CONNECT_ERRORS as exc:
                retryable = f"cannot connect to {self.masked_base}: {type(exc).__name__}"
            except _TRANSPORT_ERRORS as exc:
                if not idempotent:
                    raise TargetError(
                        f"{method} {what}: {type(exc).__name__} talking to {self.masked_base};"
                        " the request may or may not have been applied"
                    ) from exc
                retryable = f"{type(exc).__name__} talking to {self.masked_base}"
            else:
                if response.status_code < 500 or not idempotent:
                    return self._check(response, what)
                retryable = f"{self.masked_base} answered {response.status_code}"
            delay = self.retry.delay(attempt)
            spent = time.monotonic() - started
            if attempt >= self.retry.attempts or spent + delay > self.retry.budget_s:
                raise TargetError(
                    f"{method} {what}: {retryable} (gave up after {attempt} tries, {spent:.1f} s)"
                )
            self._sleep(delay)

    def _check(self, response: httpx.Response, what: str) -> httpx.Response:
        status = response.status_code
        if status < 400 or status == 404:
            return response
        detail = _detail(response)
        if status in (401, 403):
            hint = "" if self._token_set else f" (${self.token_env} is not set)"
            raise TargetError(
                f"unauthorized: check the token in ${self.token_env}{hint}"
                f" — {self.masked_base} answered {status}: {detail}"
            )
        if status in (400, 409, 422):
            raise RejectedError(
                f"{what}: the platform refused ({status}): {detail}", status=status, detail=detail
            )
        raise TargetError(f"{what}: {self.masked_base} answered {status}: {detail}")

    def _get_json(self, path: str, *, what: str, params: Mapping[str, Any] | None = None) -> Any:
        response = self._request("GET", path, what=what, params=params)
        if response.status_code == 404:
            raise TargetError(f"{what} not found at {self.masked_base}: {_detail(response)}")
        return _json(response, what)

    def _paged(
        self, path: str, *, what: str, params: Mapping[str, Any] | None = None, limit: int = 0
    ) -> Iterator[dict[str, Any]]:
        """Every item of a list envelope ``{data, next, totalCount}``, page by page."""
        limit = limit or self.page_size
        offset = 0
        for _ in range(10_000):  # a platform that never ends a list must not hang us
            page = self._get_json(
                path, what=what, params={**(params or {}), "offset": offset, "limit": limit}
            )
            items = page.get("data") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise TargetError(f"{what}: the platform's answer has no 'data' list")
            yield from items
            offset += len(items)
            if not page.get("next") or not items:
                return

    # -- workloads and protons ---------------------------------------------------------------

    def get_workload(self, workload_id: str) -> Workload:
        """``GET /workloads/{id}``; TargetError naming the id when it does not exist."""
        return Workload.from_json(
            self._get_json(f"workloads/{workload_id}", what=f"workload {workload_id!r}")
        )

    def list_workloads(self, **filters: Any) -> list[Workload]:
        """``GET /workloads`` with any documented filter, all pages."""
        return [
            Workload.from_json(d)
            for d in self._paged("workloads", what="workloads", params=filters)
        ]

    def list_protons(self, workload_id: str) -> list[Proton]:
        """The active and candidate protons of a workload, all pages."""
        items = self._paged(
            f"workloads/{workload_id}/protons", what=f"protons of workload {workload_id!r}"
        )
        return [Proton.from_json(d) for d in items]

    def get_proton(self, workload_id: str, proton_id: str) -> Proton:
        return Proton.from_json(
            self._get_json(
                f"workloads/{workload_id}/protons/{proton_id}",
                what=f"proton {proton_id!r} of workload {workload_id!r}",
            )
        )

    # -- replacement ---------------------------------------------------------------------------

    def get_replacement(self, workload_id: str) -> Replacement | None:
        """The active replacement, or None on the documented 404 "no active replacement".

        The platform answers the same 404 for an unknown workload; callers that need to
        tell the two apart call ``get_workload`` first.
        """
        what = f"replacement of workload {workload_id!r}"
        response = self._request("GET", f"workloads/{workload_id}/replacement", what=what)
        if response.status_code == 404:
            return None
        return Replacement.from_json(_json(response, what))

    def start_replacement(
        self,
        workload_id: str,
        artifact_id: str,
        *,
        warmup_minutes: int = 0,
        keep_old_minutes: int = 0,
        strategy: str = "rolling",
    ) -> Replacement:
        """``POST /workloads/{id}/replacement``; RejectedError (with the platform's detail)
        when one is already in progress or the artifact is not a valid candidate."""
        what = f"replacement of workload {workload_id!r} with artifact {artifact_id!r}"
        body = {
            "artifactId": artifact_id,
            "strategy": strategy,
            "config": {
                "warmupDurationMinutes": warmup_minutes,
                "keepOldVersionMinutes": keep_old_minutes,
            },
        }
        response = self._request(
            "POST", f"workloads/{workload_id}/replacement", what=what, json=body, idempotent=False
        )
        if response.status_code == 404:
            raise TargetError(
                f"{what}: workload or artifact not found at {self.masked_base}: {_detail(response)}"
            )
        return Replacement.from_json(_json(response, what))

    def cancel_replacement(self, workload_id: str) -> None:
        """``DELETE /workloads/{id}/replacement``; TargetError when nothing is active."""
        what = f"replacement of workload {workload_id!r}"
        response = self._request("DELETE", f"workloads/{workload_id}/replacement", what=what)
        if response.status_code == 404:
            raise TargetError(f"{what}: nothing to cancel: {_detail(response)}")

    def history(self, workload_id: str, *, limit: int | None = None) -> list[Replacement]:
        """Past replacements of a workload, as the platform orders them (newest first)."""
        items = self._paged(
            f"workloads/{workload_id}/history",
            what=f"history of workload {workload_id!r}",
            limit=min(limit or self.page_size, self.page_size),
        )
        result = []
        for item in items:
            result.append(Replacement.from_json(item))
            if limit is not None and len(result) >= limit:
                break
        return result

    def stats(
        self, workload_id: str, *, proton_id: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """``GET /workloads/{id}/stats`` → the ``metrics`` object (``totalRequests``, …)."""
        query = dict(params)
        if proton_id is not None:
            query["protonId"] = proton_id
        data = self._get_json(
            f"workloads/{workload_id}/stats",
            what=f"stats of workload {workload_id!r}",
            params=query,
        )
        metrics = data.get("metrics") if isinstance(data, dict) else None
        return dict(metrics) if isinstance(metrics, dict) else {}

    # -- artifacts -----------------------------------------------------------------------------

    def get_artifact(self, artifact_id: str) -> Artifact:
        return Artifact.from_json(
            self._get_json(f"artifacts/{artifact_id}", what=f"artifact {artifact_id!r}")
        )

    def list_artifacts(self, **filters: Any) -> list[Artifact]:
        return [
            Artifact.from_json(d)
            for d in self._paged("artifacts", what="artifacts", params=filters)
        ]

    def labels(self, artifact_ids: Iterator[str] | list[str] | set[str]) -> dict[str, str]:
        """``{artifact_id: label}`` for the given ids (one lookup each)."""
        return {aid: self.get_artifact(aid).label for aid in sorted(set(artifact_ids))}

    def invoke_url(self, workload: Workload) -> str:
        """The workload's invoke URL, absolute (a relative ``endpoint`` is joined to the API)."""
        if not workload.endpoint:
            raise TargetError(
                f"workload {workload.id!r} has no invoke endpoint yet (status {workload.status})"
            )
        return urljoin(self.base + "/", workload.endpoint)


def _detail(response: httpx.Response) -> str:
    """The platform's explanation: ``detail`` (string or validation list) or ``message``."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(data, dict):
        detail = data.get("detail", data.get("message"))
        if isinstance(detail, list):  # 422 validation: [{"loc": [...], "msg": "..."}]
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    loc = ".".join(str(p) for p in item.get("loc", ()))
                    parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
            return "; ".join(parts) or str(detail)
        if detail is not None:
            return str(detail)
    return str(data)[:200]


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise TargetError(f"{what}: the platform's answer is not JSON") from exc
