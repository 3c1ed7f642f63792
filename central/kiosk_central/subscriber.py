"""The MQTT side of the ledger: subscribes to every device's event and evidence topics and publishes acks and
commands. paho-mqtt 2.x (``CallbackAPIVersion.VERSION2``), ``connect_async`` + ``loop_start``, subscriptions made in
``on_connect``, a persistent session so that the broker keeps messages while the ledger is down.

paho's callbacks only queue what arrived; one worker thread ("ledger-ingest") takes batches from the queue, has the
:class:`~kiosk_central.ingest.Ingestor` store them in one transaction, and publishes the acks after the commit. The
queue is bounded: when the database falls behind, paho stops reading from the socket instead of filling memory.
A message that was queued but not yet committed when the process dies is not lost: it was never acknowledged, so its
device publishes it again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk_central.ingest import Ingestor, Outgoing
from kiosk_central.settings import BrokerConfig, IngestConfig
from kiosk_contract.mqttclient import paho_client
from kiosk_contract.signing import wire
from kiosk_contract.topics import Topics

log = logging.getLogger(__name__)

QOS = 1
QUEUE_SIZE = 10_000
_TICK_S = 0.2  # the worker looks for gaps to resend at least this often


def broker_client(b: BrokerConfig, client_id: str, *, persistent: bool) -> mqtt.Client:
    """A paho client for the central broker; ``persistent`` keeps the session while the client is away (the
    subscriber), otherwise it is a clean one (a one-off publisher)."""
    return paho_client(b, client_id, "broker", persistent=persistent)


class Subscriber:
    """Feeds the ingestor from the broker; :meth:`start` it, :meth:`close` it (idempotent)."""

    def __init__(self, broker: BrokerConfig, ingest: IngestConfig, ingestor: Ingestor) -> None:
        self.broker = broker
        self.ingest = ingest
        self.ingestor = ingestor
        self.prefix = broker.topic_prefix.strip("/")
        self._v5 = broker.protocol == "5"
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(QUEUE_SIZE)
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        self.client = self._make_client()

    @property
    def topics(self) -> list[str]:
        """The subscriptions: every site's and device's events and evidence (shared when a group is set)."""
        share = f"$share/{self.broker.shared_group}/" if self.broker.shared_group else ""
        return [f"{share}{self.prefix}/+/+/event", f"{share}{self.prefix}/+/+/evidence"]

    def start(self) -> Subscriber:
        if self._thread is not None:
            return self
        b = self.broker
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = b.session_expiry_s
            self.client.connect_async(b.host, b.port, keepalive=b.keepalive_s, clean_start=False, properties=props)
        else:
            self.client.connect_async(b.host, b.port, keepalive=b.keepalive_s)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="ledger-ingest", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, disconnect and join the worker."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.client.disconnect()
        except Exception as exc:
            log.warning("ledger: clean disconnect failed: %s", exc)
        self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ paho

    def _make_client(self) -> mqtt.Client:
        client = broker_client(self.broker, self.broker.client_id, persistent=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.warning("ledger: %s", self.last_error)
            return
        log.info("ledger: connected to %s:%d", self.broker.host, self.broker.port)
        self.connected.set()
        client.subscribe([(topic, QOS) for topic in self.topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            self.last_error = f"disconnected from the broker: {reason_code}"
            log.warning("ledger: %s", self.last_error)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._queue.put((message.topic, bytes(message.payload)))  # blocks when full: backpressure on the socket

    # ------------------------------------------------------------------ worker

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._next_batch()
            try:
                out = self.ingestor.handle_batch(batch) if batch else self.ingestor.tick()
            except Exception as exc:  # a database error: nothing of the batch is acknowledged; devices resend
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("ledger: a batch of %d message(s) could not be stored", len(batch))
                self.ingestor.count("failed_batches")
                self._stop.wait(1.0)
                continue
            for item in out:
                self._publish(item)

    def _next_batch(self) -> list[tuple[str, bytes]]:
        try:
            batch = [self._queue.get(timeout=_TICK_S)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.ingest.batch_wait_s
        while len(batch) < self.ingest.batch_max:
            try:
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _publish(self, item: Outgoing) -> None:
        topics = Topics.of(self.prefix, item.site, item.device)
        topic = topics.ack if item.suffix == "ack" else topics.cmd
        info = self.client.publish(topic, wire(item.payload), qos=QOS)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("ledger: publishing to %s failed: %s", topic, mqtt.error_string(info.rc))
