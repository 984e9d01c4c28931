"""The Locust glue: every Locust request becomes a version-tagged sample row, with no loss.

The entry point of the package's Locust side (``probes.locustglue``: the only modules that
import Locust). A locustfile imports ``InvokeUser`` from here; importing this module
registers two listeners on ``locust.events``: one adds the ``--probes-*`` command-line
options (``options``), the other (``init``) wires recording into the Environment according
to the runner's role (``wiring``, ``recorder``), the load shape (``shapes``) and the
Versions tab (``webui``):

* **local** (one process): a ``Recorder`` on ``events.request`` tags each response and
  hands the sample to a ``ShardWriter`` (Parquet shards on a timer, never one growing list).
* **worker**: the recorder buffers rows; the buffer rides to the master *in the same
  message as Locust's own stats* (``events.report_to_master``), so every request Locust
  counts arrives with its sample and the two counts agree exactly. Workers report every
  second (``wiring.REPORT_INTERVAL_S``; Locust's default is 3 s), so a worker that crashes
  loses at most its last second of rows. A buffer that grows past
  ``BATCH_ROWS`` between two reports goes early over the message channel
  (``runner.send_message(MESSAGE, {"rows": rows})``); messages from one worker arrive in order.
* **master**: receives both (``events.worker_report`` and ``register_message``), writes the
  shards, keeps the last seconds for the Versions tab. Its ``quit`` first tells the workers
  to quit and waits until each has said goodbye (so their final reports are in) before
  Locust's own quit, which would otherwise give them half a second.

Where samples go: ``--probes-run-dir`` (``probes load`` creates the run and passes it),
else a new ``<--probes-runs-dir>/<timestamp>/`` with a manifest of kind ``load``. At the end
the master (or the single process) writes ``RUN_DIR/locust.json`` with Locust's own request
and failure counts beside the number of samples written.
"""

from __future__ import annotations

import os
import signal

from locust import events

from probes.errors import ConfigError
from probes.lifeline import die_with_parent
from probes.locustglue.options import _OPTIONS, add_arguments, config_defaults, request_spec
from probes.locustglue.recorder import (
    BATCH_ROWS,
    REPORT_KEY,
    Recorder,
    Store,
    WorkerBuffer,
    transport_error_class,
)
from probes.locustglue.shapes import (
    SHAPE_CLASSES,
    PolicyShape,
    RampShape,
    SpikeShape,
    SteadyShape,
    StepShape,
    install_shape,
    shape_from_options,
)
from probes.locustglue.user import InvokeUser
from probes.locustglue.webui import install_web_ui, table_rows, versions_payload
from probes.locustglue.wiring import COUNTS_FILE, MESSAGE, ProbesState, on_init, setup, state_of
from probes.records import ShardWriter

__all__ = [
    "BATCH_ROWS",
    "COUNTS_FILE",
    "MESSAGE",
    "REPORT_KEY",
    "SHAPE_CLASSES",
    "_OPTIONS",
    "ConfigError",
    "InvokeUser",
    "PolicyShape",
    "ProbesState",
    "RampShape",
    "Recorder",
    "ShardWriter",
    "SpikeShape",
    "SteadyShape",
    "StepShape",
    "Store",
    "WorkerBuffer",
    "add_arguments",
    "config_defaults",
    "install_shape",
    "install_web_ui",
    "on_init",
    "request_spec",
    "setup",
    "shape_from_options",
    "state_of",
    "table_rows",
    "transport_error_class",
    "versions_payload",
]

# Started by a recording (probes load/capacity, the service): die with it, whatever kills
# it. This import runs once, in the process the recording started, before Locust forks its
# --processes workers; each of those is tied to that master the moment it is forked (not at
# init, which a worker reaches only once the master answered it). SIGKILL for them: their
# rows go to the master, and a worker of a dead master would wait on it to say goodbye.
die_with_parent(direct=True)
os.register_at_fork(after_in_child=lambda: die_with_parent(signal.SIGKILL, direct=False))

events.init_command_line_parser.add_listener(add_arguments)
events.init.add_listener(on_init)
