"""The shard writer's timer thread yields the CPU to the sending thread (Linux: per thread)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from probes.records import WRITER_NICE, ShardWriter, _yield_cpu

linux = pytest.mark.skipif(sys.platform != "linux", reason="thread priorities are Linux's")


@linux
def test_the_timer_thread_runs_below_its_creator(tmp_path):
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    writer = ShardWriter(tmp_path, "probe", flush_interval=60)
    try:
        assert writer._thread is not None
        tid = writer._thread.native_id
        assert tid is not None
        assert os.getpriority(os.PRIO_PROCESS, tid) == min(mine + WRITER_NICE, 19)
        # The creator (the sender) keeps its own priority.
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
    finally:
        writer.close()


@linux
def test_no_timer_thread_no_change(tmp_path):
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    writer = ShardWriter(tmp_path, "probe", background=False)
    writer.close()
    assert writer._thread is None
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_a_thread_that_is_not_running_is_left_alone():
    assert _yield_cpu(threading.Thread(target=lambda: None)) is False
