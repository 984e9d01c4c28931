"""Locust load shapes driven by the pure policies of ``probes.shapes``."""

from __future__ import annotations

from typing import Any

from locust import LoadTestShape
from locust.env import Environment
from locust.runners import WorkerRunner

from probes.locustglue.options import _opt
from probes.shapes import Shape, parse_shape, users_at


class PolicyShape(LoadTestShape):
    """A ``LoadTestShape`` driven by a pure policy of ``probes.shapes``."""

    abstract = True
    use_common_options = True

    def __init__(self, shape: Shape | None = None) -> None:
        super().__init__()
        self.shape = shape or Shape()

    def tick(self) -> tuple[int, float] | None:
        return users_at(self.shape, self.get_run_time())


class SteadyShape(PolicyShape):
    """The same users from start to end."""

    abstract = True


class RampShape(PolicyShape):
    """Linear ramp, then hold."""

    abstract = True


class StepShape(PolicyShape):
    """Steps of users at fixed intervals."""

    abstract = True


class SpikeShape(PolicyShape):
    """Base users with one spike."""

    abstract = True


SHAPE_CLASSES: dict[str, type[PolicyShape]] = {
    "steady": SteadyShape,
    "ramp": RampShape,
    "step": StepShape,
    "spike": SpikeShape,
}


def shape_from_options(options: Any) -> PolicyShape | None:
    """The shape of ``--probes-shape`` (None without it: Locust's own -u/-r/-t apply)."""
    text = _opt(options, "shape")
    if not text:
        return None
    run_time = getattr(options, "run_time", None)
    shape = parse_shape(
        text,
        users=int(getattr(options, "num_users", None) or 1),
        spawn_rate=float(getattr(options, "spawn_rate", None) or 1.0),
        duration=float(run_time) if run_time else 3600.0,
        flag="--probes-shape",
    )
    return SHAPE_CLASSES[shape.name](shape)


def install_shape(environment: Environment) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # shapes run on the master
    shape = shape_from_options(environment.parsed_options)
    if shape is not None:
        shape.runner = environment.runner
        environment.shape_class = shape
