"""MQTT publishing: drains the durable :class:`~kiosk.events.outbox.Outbox` to the broker and applies the server's acks.

The frame loop only appends to the outbox and calls :meth:`Publisher.wake`; it never waits for the network. One
worker thread ("mqtt-publisher") does all outbox work: it publishes pending events with QoS 1 in a small in-flight
window, marks an event published only after the broker's PUBACK, applies application acks from the central server
and answers commands. paho's callbacks only hand their data to that thread through a queue (no blocking, no SQLite
in the network thread). Topics, payloads and behaviour while offline are described in docs/mqtt.md.

Storage that fails (the outbox is *down*) never stops the worker: nothing new is published, PUBACKs and acks that
cannot be recorded are dropped (the events go out again once the storage works, and the server de-duplicates), and
the retained ``…/status`` says so in its ``storage`` field at once: the alarm IT sees while the disk cannot even
hold an alarm event.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk.config import MqttConfig
from kiosk_contract.acks import AckError, open_ack
from kiosk_contract.commands import CHANGING, CommandRefused, channel_of, parse_command, result
from kiosk_contract.mqttclient import paho_client
from kiosk_contract.signing import wire
from kiosk_contract.topics import Topics

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from kiosk.commands import CentralCommands
from kiosk.events.outbox import Outbox, OutboxError, OutboxEvent

log = logging.getLogger(__name__)

QOS = 1
DEFAULT_WINDOW = 20
SESSION_EXPIRY_S = 7 * 86400  # the broker keeps the session (and the acks sent to it) for a week offline
DEFAULT_REPUBLISH_AFTER_S = 300.0
_TICK_S = 1.0  # the worker looks at the outbox at least this often even without wake()
CONFLICT_HOLD_S = 6 * 3600.0  # an event in a seq conflict is offered again only this often


@dataclass
class _InFlight:
    seq: int | None  # None: an evidence message (its PUBACK changes nothing)
    event_id: str
    sent_at: float


class Publisher:
    """Publishes the outbox to the broker in a background thread; :meth:`start` it, :meth:`close` it.

    ``window`` bounds the QoS 1 messages handed to paho and not yet PUBACKed; ``republish_after_s`` is how long a
    published event waits for the server's ack before it is sent again (same ``event_id``).
    """

    def __init__(
        self,
        outbox: Outbox,
        cfg: MqttConfig,
        device_id: str,
        *,
        window: int = DEFAULT_WINDOW,
        republish_after_s: float = DEFAULT_REPUBLISH_AFTER_S,
        status_every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        seal: Callable[[bytes, int], bytes] | None = None,
        central_keys: Mapping[str, Ed25519PublicKey] | None = None,
        commands: CentralCommands | None = None,
        alarm: Callable[[str, str], None] = lambda name, detail: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if window < 1 or republish_after_s <= 0:
            raise ValueError("window must be at least 1 and republish_after_s positive")
        self.outbox = outbox
        self.cfg = cfg
        self.device_id = device_id
        self.topics = Topics.of(cfg.topic_prefix, cfg.site, device_id)
        self.window = window
        self.republish_after_s = republish_after_s
        self.status_every_s = cfg.status_every_s if status_every_s is None else status_every_s
        self._clock = clock
        self._seal = seal  # (stored body, seq) -> the signed message (kiosk_contract.signing.seal)
        self._central_keys = dict(central_keys or {})  # acks are released only when signed with one of these
        self._commands = commands  # the commands that change the device (kiosk.commands)
        self._alarm = alarm  # stores an alarm event (through the frame loop): (name, detail)
        self._now = now  # wall clock, for when the storage failed
        self._v5 = cfg.protocol == "5"
        self._lock = threading.Lock()  # guards the counters and flags read by status()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._inflight: dict[int, _InFlight] = {}  # mid -> message; only the worker thread touches it
        self._held: dict[int, float] = {}  # seq -> monotonic time before which it is not sent again (refused)
        self._connected = False
        self._ever_connected = False
        self._last_error: str | None = None
        self._stats = {
            "published": 0,  # PUBACKs for events
            "refused": 0,  # PUBACKs with an error reason code (MQTT 5: e.g. not authorized)
            "acked": 0,  # events acknowledged by the server through this publisher
            "refused_acks": 0,  # malformed, unsigned, forged or another device's acks
            "refused_commands": 0,  # commands not carried out, with the reason in their result
            "seq_conflicts": 0,  # events the ledger refused because it holds another event under their seq
            "commands": 0,
            "connects": 0,
        }
        self._storage: dict[str, Any] = {"ok": True, "problem": None, "since": None}  # status()["storage"]
        self._storage_sent: dict[str, Any] | None = None  # the storage field of the last status published
        self._next_status = 0.0
        self._connected_at = 0.0
        self._thread: threading.Thread | None = None
        self._closed = False
        self.client = self._make_client()

    # ------------------------------------------------------------------ public API

    def start(self) -> Publisher:
        """Connect in the background (``connect_async`` + paho's loop thread) and start the worker thread."""
        if self._thread is not None:
            return self
        if self._closed:
            raise RuntimeError("the publisher is closed")
        # A persistent session: acks and commands the server sends while the kiosk is offline wait at the broker
        # instead of being dropped (which would make every event of an outage be sent twice).
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            self.client.connect_async(
                self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, clean_start=False, properties=props
            )
        else:
            self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Tell the worker that something was appended; returns at once."""
        self._wake.set()

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up now (the screen shows it)."""
        return self._connected

    def status(self) -> dict[str, Any]:
        """Connection flag, outbox counts (the last known while the storage fails), the storage (``ok``, the
        ``problem`` while it fails and ``since`` when, ISO UTC), counters and the last error (the device status
        message)."""
        storage = self.storage()
        try:
            counts: dict[str, int] | None = self.outbox.counts()
        except Exception as exc:  # a closed or failing outbox must not break a status report
            counts = None
            self._error(f"outbox: {exc}")
        with self._lock:
            return {
                "device": self.device_id,
                "connected": self._connected,
                "counts": counts,
                "storage": storage,
                "in_flight": len(self._inflight),
                "last_error": self._last_error,
                **self._stats,
            }

    def storage(self) -> dict[str, Any]:
        """``{"ok", "problem", "since"}``: whether the outbox can store events, why not, and since when (the first
        time this publisher saw it down; ISO UTC)."""
        ok = self.outbox.available
        problem = None if ok else self.outbox.problem or "the outbox is down"
        with self._lock:
            if ok:
                if not self._storage["ok"]:
                    log.info("mqtt: the outbox works again")
                self._storage = {"ok": True, "problem": None, "since": None}
            elif self._storage["ok"] or self._storage["problem"] != problem:
                since = self._storage["since"] or self._now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                if self._storage["ok"]:
                    log.error("mqtt: the outbox is down, nothing new is published: %s", problem)
                self._storage = {"ok": False, "problem": problem, "since": since}
            return dict(self._storage)

    def close(self, timeout: float = 5.0) -> None:
        """Publish a clean retained "offline", disconnect and join the worker. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("mqtt: the publisher thread did not stop within %.1f s", timeout)
        try:
            if self._connected:
                info = self.client.publish(self.topics.online, b"offline", qos=QOS, retain=True)
                with contextlib.suppress(Exception):
                    info.wait_for_publish(min(timeout, 2.0))
            self.client.disconnect()
        except Exception as exc:
            log.warning("mqtt: clean disconnect failed: %s", exc)
        self.client.loop_stop()
        with self._lock:
            self._connected = False

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ paho client and callbacks

    def _make_client(self) -> mqtt.Client:
        client = paho_client(self.cfg, self.device_id, "mqtt", persistent=True)
        client.max_inflight_messages_set(self.window * 2 + 10)  # our window (events + evidence) and a few extra
        client.max_queued_messages_set(0)
        client.will_set(self.topics.online, b"offline", qos=QOS, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._error(f"broker refused the connection: {reason_code}")
            return
        with self._lock:
            self._connected = True
            self._ever_connected = True
            self._stats["connects"] += 1
        log.info("mqtt: connected to %s:%d", self.cfg.host, self.cfg.port)
        # the channels' retained topics too: the latest gallery and the latest schedule each wait there
        client.subscribe([(self.topics.ack, QOS), (self.topics.cmd, QOS),
                          *((topic, QOS) for topic in self.topics.channels.values())])
        client.publish(self.topics.online, b"online", qos=QOS, retain=True)
        self._next_status = 0.0  # a fresh status right after (re)connecting
        self._connected_at = self._clock()
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._error(f"cannot reach the broker {self.cfg.host}:{self.cfg.port}; retrying")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._lock:
            was = self._connected
            self._connected = False
        if was and not self._stop.is_set():
            self._error(f"disconnected from the broker: {reason_code}")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self._inbox.put(("puback", (mid, bool(getattr(reason_code, "is_failure", False)), str(reason_code))))
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.put(("message", (message.topic, bytes(message.payload))))
        self._wake.set()

    # ------------------------------------------------------------------ worker thread

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(_TICK_S)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._step()
            except OutboxError as exc:  # storage that fails: status() says so; nothing to trace
                self._error(f"outbox: {exc}")
                self._stop.wait(_TICK_S)
            except Exception as exc:  # the thread must survive an outbox or network error
                log.exception("mqtt: publisher step failed")
                self._error(f"{type(exc).__name__}: {exc}")
                self._stop.wait(_TICK_S)

    def _step(self) -> None:
        self._drain_inbox()
        storage = self.storage()
        if not self._connected:
            return
        if storage["ok"]:  # while down the outbox has nothing to give
            self._fill_window()
        now = self._clock()
        if self.status_every_s > 0 and (now >= self._next_status or storage != self._storage_sent):
            self._next_status = now + self.status_every_s  # a change of the storage is published at once
            status = self.status()
            self.client.publish(self.topics.status, json.dumps(status).encode(), qos=QOS, retain=True)
            self._storage_sent = status["storage"]

    def _drain_inbox(self) -> None:
        published: list[int] = []
        while True:
            try:
                kind, data = self._inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "puback":
                mid, failed, reason = data
                item = self._inflight.pop(mid, None)
                if item is None or item.seq is None:
                    continue
                if failed:
                    with self._lock:
                        self._stats["refused"] += 1
                    self._held[item.seq] = self._clock() + self.republish_after_s
                    self._error(f"broker refused event {item.event_id}: {reason}")
                else:
                    published.append(item.seq)
            elif kind == "message":
                if published:  # keep the order: a PUBACK before an ack must be recorded first
                    self._mark(published)
                    published = []
                topic, payload = data
                if topic == self.topics.ack:
                    self._handle_ack(payload)
                elif topic == self.topics.cmd:
                    self._handle_cmd(payload)
                else:
                    channel = next((c for c, t in self.topics.channels.items() if t == topic), None)
                    if channel is not None:
                        self._handle_cmd(payload, channel)
        if published:
            self._mark(published)

    def _mark(self, seqs: list[int]) -> None:
        with self._lock:
            self._stats["published"] += len(seqs)
        try:
            self.outbox.mark_published(seqs)
        except OutboxError as exc:  # still pending in the outbox: sent again once it works (the server dedups)
            self._error(f"PUBACKs of {len(seqs)} event(s) not recorded, they will be sent again: {exc}")

    def _fill_window(self) -> None:
        now = self._clock()
        # A message whose PUBACK has not come within republish_after_s of being sent (or of the last connect)
        # leaves the window, so a lost PUBACK cannot stall publishing; its event is sent again from the outbox.
        since = max(self._connected_at, 0.0)
        for mid in [m for m, f in self._inflight.items() if now - max(f.sent_at, since) > self.republish_after_s]:
            del self._inflight[mid]
        free = self.window - len(self._inflight)
        if free <= 0:
            return
        self._held = {s: t for s, t in self._held.items() if t > now}
        busy = {m.seq for m in self._inflight.values() if m.seq is not None} | set(self._held)
        batch = self.outbox.pending(limit=free + len(busy), republish_after_s=self.republish_after_s)
        for event in batch:
            if free <= 0 or not self._connected:
                break
            if event.seq in busy:
                continue
            free -= self._publish_event(event, now)

    def _publish_event(self, event: OutboxEvent, now: float) -> int:
        """Publish one event and its evidence; returns the number of messages handed to paho."""
        payload = self._seal(event.payload, event.seq) if self._seal else event.payload
        info = self.client.publish(self.topics.event, payload, qos=QOS, properties=self._props(event))
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._error(f"publish of event {event.event_id} failed: {mqtt.error_string(info.rc)}")
            return 1
        self._inflight[info.mid] = _InFlight(event.seq, event.event_id, now)
        sent = 1
        if event.has_evidence:
            jpeg = self.outbox.evidence(event.seq)
            if jpeg is not None:
                envelope = {
                    "seq": event.seq,
                    "event_id": event.event_id,
                    "content_type": "image/jpeg",
                    "jpeg_b64": base64.b64encode(jpeg).decode("ascii"),
                }
                ev = self.client.publish(
                    self.topics.evidence, json.dumps(envelope).encode(), qos=QOS, properties=self._props(event)
                )
                if ev.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    self._inflight[ev.mid] = _InFlight(None, event.event_id, now)
                    sent += 1
        return sent

    def _props(self, event: OutboxEvent) -> Properties | None:
        if not self._v5:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("seq", str(event.seq)), ("event_id", event.event_id), ("kind", event.kind)]
        return props

    # ------------------------------------------------------------------ acks and commands

    def _handle_ack(self, payload: bytes) -> None:
        """Release what a signed ack of the central server names by (seq, event_id); anything else is refused and
        counted, and releases nothing."""
        try:
            ack = open_ack(payload, self._central_keys, device=self.device_id)
        except AckError as exc:
            with self._lock:
                self._stats["refused_acks"] += 1
            log.warning("mqtt: ack refused (%s): %s", exc.reason, exc)
            return
        try:
            changed = self.outbox.acknowledge(ack.events) if ack.events else 0
        except OutboxError as exc:  # the events stay unacknowledged: sent again later, and acked again
            changed = 0
            self._error(f"an ack of {len(ack.events)} event(s) not recorded, they will be sent again: {exc}")
        with self._lock:
            self._stats["acked"] += changed
            self._stats["seq_conflicts"] += len(ack.conflicts)
        for c in ack.conflicts:
            detail = (f"the ledger holds event {c.stored_event_id} as seq {c.seq}; this kiosk's event {c.event_id} "
                      f"under the same seq was refused and is kept here")
            log.error("mqtt: seq conflict: %s", detail)
            self._held[c.seq] = self._clock() + CONFLICT_HOLD_S  # not sent again and again meanwhile
            self._alarm("seq_conflict", detail)

    def _handle_cmd(self, payload: bytes, channel: str | None = None) -> None:
        """Answer every command on ``…/cmd/result``: carried out, or refused with the reason. ``channel``: it came on
        that channel's retained topic, which carries only that channel's commands. An empty message is no command
        (a retained message cleared) and gets no answer."""
        if not payload:
            log.info("mqtt: an empty message on the %s command topic (a retained command cleared): ignored",
                     channel or "plain")
            return
        request_id: str | int | None = None
        name = None
        try:
            command = parse_command(payload)
            request_id, name = command["request_id"], command["cmd"]
            if channel is not None and (name not in CHANGING or channel_of(name) != channel):
                raise CommandRefused(f"{name} does not belong on the {channel} channel's topic "
                                     f"({self.topics.channel(channel)})", "wrong_channel")
            fields: dict[str, Any] = {}
            if name == "status":
                self._next_status = 0.0  # the worker publishes a fresh status on its next pass
            elif name == "resend":
                try:
                    fields["requeued"] = self.outbox.requeue(command["from_seq"])
                except OutboxError as exc:
                    raise CommandRefused(f"the outbox cannot be changed: {exc}", "storage_unavailable") from None
                self._wake.set()
            elif name in CHANGING:
                if self._commands is None:
                    raise CommandRefused(f"{name} needs the central key and the device's state; this kiosk has "
                                         "neither configured", "unsupported")
                fields = self._commands.handle(command)
            answer = result(request_id, True, cmd=name, **fields)
            with self._lock:
                self._stats["commands"] += 1
        except CommandRefused as exc:
            request_id, name = request_id if request_id is not None else exc.request_id, name or exc.cmd
            with self._lock:
                self._stats["refused_commands"] += 1
            log.warning("mqtt: command %s refused (%s): %s", name or "?", exc.reason, exc)
            answer = result(request_id, False, **({"cmd": name} if name else {}), error=str(exc)[:2000],
                            refused=exc.reason)
        self.client.publish(self.topics.cmd_result, wire(answer), qos=QOS)

    def _error(self, text: str) -> None:
        log.warning("mqtt: %s", text)
        with self._lock:
            self._last_error = text
