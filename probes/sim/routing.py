"""Which proton serves an invoke request: the rollout's weights, pins, gap and retirement.

The policy itself is pure (:func:`probes.sim.state.weights` and :func:`~probes.sim.state.route`);
the :class:`Router` applies it to the live records: it draws from its own seeded generator,
keeps the connection pins of ``pin_connections`` (a client connection stays on the proton it
first reached while that one can serve) and round-robins over a proton's ready replicas.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from probes.sim import state
from probes.sim.models import Proton, Workload
from probes.sim.protons import Replica


class Router:
    """Routing of invoke requests over the protons of ``protons`` (the engine's records)."""

    def __init__(
        self,
        protons: Mapping[str, Proton],
        now: Callable[[], float],
        *,
        pin_connections: bool,
        seed: int | None,
    ) -> None:
        self._protons = protons
        self._now = now  # platform time
        self._rng = random.Random(seed)
        self.pin_connections = pin_connections
        #: client peer -> (its transport, proton id); only with ``pin_connections``
        self.pins: dict[Any, tuple[Any, str]] = {}

    def pick(self, wl: Workload, peer: Any, transport: Any) -> tuple[Proton, Replica] | None:
        """The proton (and replica) for one request, or None when none may be routed."""
        proton_id = self._route(wl)
        if self.pin_connections and peer is not None:
            # a connection keeps the proton it first reached while that one can serve;
            # the transport identity guards against a reused client port
            pinned = self.pins.get(peer)
            held = self._protons.get(pinned[1]) if pinned and pinned[0] is transport else None
            if held is not None and held.routable():
                proton_id = held.id
            elif proton_id is not None:
                self.pins[peer] = (transport, proton_id)
        if proton_id is None:
            return None
        proton = self._protons.get(proton_id)
        if proton is None:
            return None
        ready = proton.routable()
        if not ready:
            return None
        proton.rr = (proton.rr + 1) % len(ready)
        return proton, ready[proton.rr]

    def _route(self, wl: Workload) -> str | None:
        rep = wl.replacement
        if rep is None or rep.rollout.switched_at is None or rep.status in state.OUTCOMES:
            return wl.proton_id
        old = rep.previous_proton_ids[0] if rep.previous_proton_ids else None
        ws = state.weights(rep.rollout, self._now(), old, wl.proton_id)
        if len(ws) == 1:
            return ws[0][0]
        return state.route(ws, self._rng.random())

    def pinned_to(self, proton_id: str) -> int:
        """Open client connections pinned to a proton."""
        return sum(
            1
            for transport, pid in self.pins.values()
            if pid == proton_id and not transport.is_closing()
        )

    def purge(self) -> None:
        """Forget the pins of closed connections."""
        for peer, (transport, _) in list(self.pins.items()):
            if transport.is_closing():
                del self.pins[peer]

    def release(self, proton: Proton) -> None:
        """Close the idle connections pinned to a retired proton.

        A connection with a request in flight keeps its pin: the gateway answers it with
        ``Connection: close`` (the proton is ``retired``). Either way the client reconnects
        and its next request lands on the new proton. As on any server closing idle
        keep-alive connections, a request the client sends at that very moment meets a
        closed connection (the caller sees a reset).
        """
        busy = {id(transport) for _, transport in proton.inflight.values()}
        for peer, (transport, held) in list(self.pins.items()):
            if held == proton.id and id(transport) not in busy:
                del self.pins[peer]
                transport.close()


__all__ = ["Router"]
