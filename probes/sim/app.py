"""The proton app: the small service every simulated proton runs, as its own process.

``python -m probes.sim.app --port 0`` binds 127.0.0.1, prints ``PORT <n>`` on stdout once it
listens, and serves:

- ``GET /health`` — readiness: 503 until ``SIM_STARTUP_S`` has passed (never with
  ``SIM_NEVER_READY``), then 200;
- ``GET /version`` — ``{"version": LABEL}``;
- ``POST /chat/completions`` and ``POST /v1/chat/completions`` — an OpenAI-compatible chat
  completion echoing the last message; with ``"stream": true`` in the request body, streamed
  as server-sent events (``chat.completion.chunk`` events, then ``data: [DONE]``);
- any other path and method — an echo of method, path, query and body size.

The version label (``SIM_VERSION``) is revealed per ``SIM_REVEAL_VERSION``: ``header``
(``X-Proton-Version``), ``body`` (JSON field ``version``), ``both`` (default) or ``none``.
``SIM_LATENCY_MS`` (see :func:`parse_latency`) delays every non-health response and
``SIM_ERROR_RATE`` answers that share of them with a 500. The process exits when its stdin
closes, so a proton never outlives the simulator that started it, however that one ends.

Streams: ``SIM_FIRST_TOKEN_MS`` delays the first content chunk (after the role-only chunk that
real servers send with the head), ``SIM_INTER_TOKEN_MS`` each next one (both in
``parse_latency``'s forms), ``SIM_TOKENS`` says how many content chunks an answer has, and
``SIM_ABORT_SHARE`` cuts that share of streams half-way (after ``SIM_TOKENS // 2`` chunks the
connection is aborted: no ``finish_reason``, no ``[DONE]``). A non-streamed answer takes as
long as its stream would have. The version is the chunks' ``model`` field (and the header as
usual).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

REVEAL_MODES = ("header", "body", "both", "none")


MAX_LATENCY_MS = 3_600_000.0  # one hour
MAX_SIGMA = 5.0
MAX_STARTUP_S = 10_000_000.0  # platform seconds
MAX_TOKENS = 100_000


def _ms(text: str) -> float:
    """One latency in ms: finite, 0..MAX_LATENCY_MS (ValueError otherwise)."""
    value = float(text)
    if not (math.isfinite(value) and 0 <= value <= MAX_LATENCY_MS):
        raise ValueError(text)
    return value


def parse_latency(spec: str) -> Callable[[random.Random], float]:
    """A latency sampler (milliseconds) from its text form.

    ``"5"`` constant, ``"5-20"`` uniform, ``"lognorm:MEDIAN:SIGMA"`` log-normal with that
    median (ms) and shape (0..5), capped at an hour. Every number finite, 0..3,600,000 ms.
    Raises ``ValueError`` naming the expected forms.
    """
    text = (spec or "0").strip()
    try:
        if text.startswith("lognorm:"):
            _, median, sigma = text.split(":")
            mu, s = _ms(median), float(sigma)
            if mu <= 0 or not 0 <= s <= MAX_SIGMA:
                raise ValueError
            log_mu = math.log(mu)
            return lambda rng: min(MAX_LATENCY_MS, rng.lognormvariate(log_mu, s))
        if "-" in text.lstrip("-"):
            low, high = (_ms(x) for x in text.split("-", 1))
            if high < low:
                raise ValueError
            return lambda rng: rng.uniform(low, high)
        value = _ms(text)
        return lambda rng: value
    except ValueError:
        raise ValueError(
            f"latency_ms {spec!r}: expected MS, LOW-HIGH or lognorm:MEDIAN:SIGMA (e.g. 5, 5-20, "
            "lognorm:10:0.5)"
        ) from None


@dataclass(frozen=True)
class AppConfig:
    """What one proton app does, read from ``SIM_*`` environment variables."""

    version: str = "unknown"
    latency_ms: str = "0"
    error_rate: float = 0.0
    startup_s: float = 0.0  # platform seconds; divided by time_scale
    never_ready: bool = False
    reveal_version: str = "both"
    time_scale: float = 1.0
    seed: int | None = None
    first_token_ms: str = "0"
    inter_token_ms: str = "0"
    tokens: int = 16
    abort_share: float = 0.0

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str]) -> AppConfig:
        """Parse the environment; a bad value raises ``ValueError`` naming the variable."""
        reveal = env.get("SIM_REVEAL_VERSION", "both").lower()
        if reveal not in REVEAL_MODES:
            raise ValueError(f"SIM_REVEAL_VERSION {reveal!r}: expected one of {REVEAL_MODES}")
        cfg = cls(
            version=env.get("SIM_VERSION", "unknown"),
            latency_ms=env.get("SIM_LATENCY_MS", "0"),
            error_rate=_float(env, "SIM_ERROR_RATE", 0.0),
            startup_s=_float(env, "SIM_STARTUP_S", 0.0),
            never_ready=env.get("SIM_NEVER_READY", "").lower() in ("1", "true", "yes", "on"),
            reveal_version=reveal,
            time_scale=_float(env, "SIM_TIME_SCALE", 1.0) or 1.0,
            seed=int(env["SIM_SEED"]) if env.get("SIM_SEED") else None,
            first_token_ms=env.get("SIM_FIRST_TOKEN_MS", "0") or "0",
            inter_token_ms=env.get("SIM_INTER_TOKEN_MS", "0") or "0",
            tokens=_int(env, "SIM_TOKENS", 16),
            abort_share=_float(env, "SIM_ABORT_SHARE", 0.0),
        )
        parse_latency(cfg.latency_ms)
        for name, spec in (
            ("SIM_FIRST_TOKEN_MS", cfg.first_token_ms),
            ("SIM_INTER_TOKEN_MS", cfg.inter_token_ms),
        ):
            try:
                parse_latency(spec)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if not 1 <= cfg.tokens <= MAX_TOKENS:
            raise ValueError(f"SIM_TOKENS {cfg.tokens}: expected an integer in 1..{MAX_TOKENS}")
        if not 0.0 <= cfg.abort_share <= 1.0:
            raise ValueError(f"SIM_ABORT_SHARE {cfg.abort_share}: expected a share in [0, 1]")
        if not 0.0 <= cfg.error_rate <= 1.0:
            raise ValueError(f"SIM_ERROR_RATE {cfg.error_rate}: expected a share in [0, 1]")
        if not 0.0 <= cfg.startup_s <= MAX_STARTUP_S:  # NaN fails too
            raise ValueError(
                f"SIM_STARTUP_S {cfg.startup_s}: expected platform seconds in 0..{MAX_STARTUP_S:g}"
            )
        if not (math.isfinite(cfg.time_scale) and cfg.time_scale > 0):
            raise ValueError(f"SIM_TIME_SCALE {cfg.time_scale}: expected a number > 0")
        return cfg


def _float(env: dict[str, str] | os._Environ[str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} {raw!r}: expected a number") from None


def _int(env: dict[str, str] | os._Environ[str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} {raw!r}: expected an integer") from None


def _wants_stream(body: bytes) -> bool:
    """Whether a chat request asks for a streamed answer (``"stream": true``)."""
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("stream") is True


def _sse(doc: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(doc, separators=(",", ":")).encode() + b"\n\n"


def _chunk(label: str, created: int, delta: dict[str, str], finish: str | None) -> bytes:
    """One ``chat.completion.chunk`` event."""
    return _sse(
        {
            "id": "chatcmpl-sim",
            "object": "chat.completion.chunk",
            "created": created,
            "model": label,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    )


def make_app(cfg: AppConfig) -> web.Application:
    """The aiohttp application of one proton (minimal work per request: it is benchmarked)."""
    rng = random.Random(cfg.seed)
    latency = parse_latency(cfg.latency_ms)
    constant_zero = cfg.latency_ms.strip() in ("", "0", "0.0")
    ready_at = time.monotonic() + cfg.startup_s / cfg.time_scale
    header = {"X-Proton-Version": cfg.version} if cfg.reveal_version in ("header", "both") else {}
    in_body = cfg.reveal_version in ("body", "both")
    state = {"label": cfg.version}
    first_token = parse_latency(cfg.first_token_ms)
    inter_token = parse_latency(cfg.inter_token_ms)
    # Draw stream delays only when set: a seeded run without them keeps its random sequence.
    paced = any(v.strip() not in ("", "0", "0.0") for v in (cfg.first_token_ms, cfg.inter_token_ms))

    def reply(payload: dict[str, object], status: int = 200) -> web.Response:
        if in_body:
            payload["version"] = state["label"]
        return web.Response(
            body=json.dumps(payload).encode(),
            status=status,
            headers=header,
            content_type="application/json",
        )

    async def delay_and_fail() -> web.Response | None:
        if not constant_zero:
            await asyncio.sleep(latency(rng) / 1000.0)
        if cfg.error_rate and rng.random() < cfg.error_rate:
            return reply({"error": "simulated server error"}, status=500)
        return None

    async def health(request: web.Request) -> web.Response:
        if cfg.never_ready or time.monotonic() < ready_at:
            return web.Response(status=503, text="not ready")
        return reply({"status": "ok"})

    async def version(request: web.Request) -> web.Response:
        return reply({})

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        failed = await delay_and_fail()
        if failed is not None:
            return failed
        if _wants_stream(body):
            return await stream(request)
        if paced:  # as long as its stream would have taken, in one sleep
            wait = first_token(rng) + sum(inter_token(rng) for _ in range(cfg.tokens - 1))
            await asyncio.sleep(wait / 1000.0)
        return reply(_completion(body, state["label"]))

    async def stream(request: web.Request) -> web.StreamResponse:
        label, created = state["label"], int(time.time())
        resp = web.StreamResponse(headers={**header, "Cache-Control": "no-cache"})
        resp.content_type = "text/event-stream"
        await resp.prepare(request)
        await resp.write(_chunk(label, created, {"role": "assistant", "content": ""}, None))
        cut = cfg.tokens // 2 if cfg.abort_share and rng.random() < cfg.abort_share else -1
        for i in range(cfg.tokens):
            wait = (first_token(rng) if i == 0 else inter_token(rng)) if paced else 0.0
            if wait:
                await asyncio.sleep(wait / 1000.0)
            if i == cut:
                assert request.transport is not None
                request.transport.abort()  # half-way: no finish_reason, no [DONE]
                return resp
            await resp.write(_chunk(label, created, {"content": f"tok{i} "}, None))
        await resp.write(_chunk(label, created, {}, "stop") + b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        failed = await delay_and_fail()
        if failed is not None:
            return failed
        return reply(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "bytes": len(body),
                "authorization": "authorization" in request.headers,
            }
        )

    async def relabel(request: web.Request) -> web.Response:
        # Used by the platform after `promote` locks a draft in place (no restart).
        state["label"] = (await request.json())["version"]
        if header:
            header["X-Proton-Version"] = state["label"]
        return reply({})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/version", version)
    app.router.add_post("/chat/completions", chat)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/__sim/label", relabel)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def _completion(body: bytes, label: str) -> dict[str, object]:
    try:
        messages = json.loads(body or b"{}").get("messages") or []
        last = str(messages[-1].get("content", "")) if messages else ""
    except (ValueError, AttributeError, TypeError):
        last = ""
    return {
        "id": "chatcmpl-sim",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": label,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": f"echo: {last}"},
            }
        ],
        "usage": {
            "prompt_tokens": len(last.split()),
            "completion_tokens": len(last.split()) + 1,
            "total_tokens": 2 * len(last.split()) + 1,
        },
    }


def _exit_when_stdin_closes() -> None:
    """Exit as soon as the parent's pipe closes: no orphan proton outlives its simulator."""

    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


async def _serve(cfg: AppConfig, host: str, port: int) -> None:
    runner = web.AppRunner(make_app(cfg), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {bound}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m probes.sim.app``."""
    parser = argparse.ArgumentParser(prog="python -m probes.sim.app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--no-stdin-watch",
        action="store_true",
        help="Keep running when stdin closes (for running the app by hand).",
    )
    args = parser.parse_args(argv)
    try:
        cfg = AppConfig.from_env(os.environ)
    except ValueError as exc:
        print(f"proton app: {exc}", file=sys.stderr)
        return 2
    if not args.no_stdin_watch:
        _exit_when_stdin_closes()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(cfg, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
