"""kill -9 at random points: every sequence whose sync() resolved (printed by the child) must be
present with the right payload after reopening. Bounded: 10 rounds, each well under 2 s."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from jsedge.store.base import StoreConfig
from jsedge.store.filestore import FileStore

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crash_child import payload

CHILD = Path(__file__).with_name("crash_child.py")
ROOT = Path(__file__).resolve().parents[2]


def test_kill_9_loses_no_acked_message(tmp_path):
    rng = random.Random(1234)
    directory = tmp_path / "stream"
    acked: set[int] = set()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for round_ in range(10):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(directory), str(round_)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            assert proc.stdout is not None
            # wait for the first ack (the child is running), then kill after a random extra delay
            first = proc.stdout.readline()
            assert first, proc.stderr.read().decode() if proc.stderr else ""
            deadline = time.monotonic() + rng.uniform(0.01, 0.2)
            while time.monotonic() < deadline:
                time.sleep(0.005)  # the child runs meanwhile; nothing to poll for
            os.kill(proc.pid, signal.SIGKILL)
            rest = proc.stdout.read()
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        acked.update(int(line) for line in (first + rest).split())
        store = FileStore(directory, StoreConfig(name="CRASH"), block_size=16 * 1024, log=lambda t: None)
        try:
            missing = [seq for seq in acked if (m := store.load_msg(seq)) is None or m.data != payload(seq)]
            assert not missing, (round_, missing[:10])
            assert store.state().last_seq >= max(acked)
        finally:
            store.close()
    assert len(acked) > 10
