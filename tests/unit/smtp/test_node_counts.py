"""SMTP connection limits that hold for every worker of a node (shared memory)."""

from __future__ import annotations

import os

from postline.smtp.node_counts import NodeConnections
from postline.smtp.server import TOO_MANY_CONNECTIONS, TOO_MANY_FROM_ADDRESS, ConnectionLimits


def test_workers_count_against_one_limit_per_address_and_in_all() -> None:
    table = NodeConnections(2)
    trusted = "10.0.0.9"
    a = ConnectionLimits(3, 5, exempt=lambda x: x == trusted, node=table.worker("submission", 0))
    b = ConnectionLimits(3, 5, exempt=lambda x: x == trusted, node=table.worker("submission", 1))
    assert a.admit("10.0.0.1") is None
    assert b.admit("10.0.0.1") is None
    assert a.admit("10.0.0.1") is None
    assert b.admit("10.0.0.1") == TOO_MANY_FROM_ADDRESS  # 3 open over the two workers
    assert a.admit("10.0.0.1") == TOO_MANY_FROM_ADDRESS
    assert b.admit(trusted) is None  # exempt from the per-address limit, not from the total
    assert b.admit(trusted) is None
    assert a.admit("10.0.0.2") == TOO_MANY_CONNECTIONS  # 5 open in all
    b.release("10.0.0.1")
    assert a.admit("10.0.0.1") is None
    # The other listener counts apart.
    inbound = ConnectionLimits(3, 5, node=table.worker("inbound", 1))
    assert inbound.admit("10.0.0.1") is None


def test_a_dead_workers_connections_are_forgotten() -> None:
    table = NodeConnections(2)
    a = ConnectionLimits(2, 10, node=table.worker("inbound", 0))
    b = ConnectionLimits(2, 10, node=table.worker("inbound", 1))
    assert a.admit("192.0.2.1") is None and a.admit("192.0.2.1") is None
    assert b.admit("192.0.2.1") == TOO_MANY_FROM_ADDRESS
    table.forget(0)  # worker 0 died: its connections closed with it
    assert b.admit("192.0.2.1") is None


def test_the_table_is_shared_with_forked_workers() -> None:
    table = NodeConnections(2)
    up_read, up_write = os.pipe()  # worker to test
    down_read, down_write = os.pipe()  # test to worker
    pid = os.fork()
    if pid == 0:  # worker 1, in another process
        code = 1
        try:
            child = ConnectionLimits(2, 10, node=table.worker("submission", 1))
            ok = child.admit("198.51.100.7") is None and child.admit("198.51.100.7") is None
            os.write(up_write, b"y" if ok else b"n")
            os.read(down_read, 1)  # hold the connections until the test has looked
            code = 0
        finally:
            os._exit(code)
    try:
        assert os.read(up_read, 1) == b"y"
        parent = ConnectionLimits(2, 10, node=table.worker("submission", 0))
        assert parent.admit("198.51.100.7") == TOO_MANY_FROM_ADDRESS
        assert parent.admit("198.51.100.8") is None
    finally:
        os.write(down_write, b"x")
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_workers_admitting_at_once_never_pass_the_limit_together() -> None:
    """Four processes take and give back the one place of an address as fast as they
    can; each looks, while it holds the place, at how many the node counts there."""
    table = NodeConnections(4)
    start_read, start_write = os.pipe()
    done_read, done_write = os.pipe()
    pids = []
    for worker in range(4):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                counts = table.worker("submission", worker)
                bucket = counts.bucket("203.0.113.9")
                os.read(start_read, 1)  # all start together
                most = 0
                for _ in range(20_000):
                    if counts.admit(bucket, per_address=1, total=10_000) is None:
                        most = max(most, counts.from_bucket(bucket))
                        counts.release(bucket)
                os.write(done_write, bytes([most]))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.write(start_write, b"gogo")
    most = [os.read(done_read, 1)[0] for _ in pids]
    for pid in pids:
        os.waitpid(pid, 0)
    assert max(most) == 1, most
