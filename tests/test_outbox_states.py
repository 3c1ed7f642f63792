"""A property-based state machine over the outbox: any order of commit, publish, broker loss, ack, prune and
crash keeps every committed event until it is acknowledged, numbers never repeat, and states only move forward."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kiosk.events.outbox import Outbox

ORDER = {"pending": 0, "published": 1, "acknowledged": 2}
RETENTION_S = 30.0
REPUBLISH_S = 10.0


class OutboxMachine(RuleBasedStateMachine):
    """The model: what was committed, what the broker PUBACKed, what the server acknowledged."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-sm-"))
        self.now = 1_000_000.0
        self.outbox = self._open()
        self.committed: dict[str, int] = {}  # event_id -> seq
        self.state: dict[str, str] = {}
        self.created: dict[str, float] = {}
        self.max_seq = 0
        self.counter = 0

    def _open(self) -> Outbox:
        return Outbox.open(self.dir / "outbox.sqlite", retention_s=RETENTION_S, clock=lambda: self.now,
                           seq_block=4)

    @rule(evidence=st.booleans())
    def commit(self, evidence: bool) -> None:
        self.counter += 1
        event_id = f"ev-{self.counter}"
        stored = self.outbox.append(event_id, "attendance", b'{"n": %d}' % self.counter,
                                    b"\xff\xd8jpeg" if evidence else None)
        assert stored.seq > self.max_seq, "sequence numbers only grow"
        self.max_seq = stored.seq
        self.committed[event_id] = stored.seq
        self.created[event_id] = self.now
        self.state[event_id] = "pending"

    @rule(again=st.booleans())
    def retry_commit(self, again: bool) -> None:
        """A retry of the last commit with the same event id must not double it."""
        if not self.committed or not again:
            return
        event_id = max(self.committed, key=lambda e: self.committed[e])
        if self.state[event_id] == "acknowledged" and self.outbox.get(event_id) is None:
            return  # pruned: the outbox no longer knows it
        assert self.outbox.append(event_id, "attendance", b"{}").seq == self.committed[event_id]

    @rule(n=st.integers(1, 5))
    def publish(self, n: int) -> None:
        """The publisher takes what is due and the broker PUBACKs it."""
        due = self.outbox.pending(limit=n, republish_after_s=REPUBLISH_S)
        self.outbox.mark_published([e.seq for e in due])
        for e in due:
            if self.state[e.event_id] == "pending":
                self.state[e.event_id] = "published"

    @rule(n=st.integers(1, 5))
    def ack(self, n: int) -> None:
        """The central server acknowledges some published events (acks may repeat)."""
        published = sorted(e for e, s in self.state.items() if s in ("published", "acknowledged"))[:n]
        self.outbox.acknowledge([(self.committed[e], e) for e in published])
        for e in published:
            self.state[e] = "acknowledged"

    @rule(seconds=st.floats(0, 60))
    def time_passes(self, seconds: float) -> None:
        """Also a broker that lost messages: unacknowledged ones come due again after REPUBLISH_S."""
        self.now += seconds

    @rule()
    def prune(self) -> None:
        self.outbox.prune()

    @rule()
    def crash(self) -> None:
        """The process dies (no close) and starts again on the same files."""
        self.outbox._conn.close()  # what the OS does to a killed process's connection
        self.outbox._closed = True
        os.close(self.outbox._lock_fd)
        self.outbox = self._open()

    @precondition(lambda self: bool(self.committed))
    @invariant()
    def nothing_unacknowledged_is_lost(self) -> None:
        for event_id, seq in self.committed.items():
            row = self.outbox.get(event_id)
            if self.state[event_id] != "acknowledged":
                assert row is not None and row.seq == seq, f"{event_id} lost before its ack"
                assert ORDER[row.state] >= ORDER[self.state[event_id]]
            elif row is None:
                assert self.now - self.created[event_id] >= RETENTION_S, f"{event_id} pruned before its retention"
            else:
                assert row.state == "acknowledged"

    @invariant()
    def counts_match_the_model(self) -> None:
        counts = self.outbox.counts()
        assert counts["pending"] == sum(s == "pending" for s in self.state.values())
        assert counts["published"] == sum(s == "published" for s in self.state.values())

    def teardown(self) -> None:
        self.outbox.close()


TestOutboxStateMachine = OutboxMachine.TestCase
TestOutboxStateMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
