"""Storage that goes read-only or fails (issue 13): the terminal says it cannot record and sends people to the manual
attendance list, never crashes, keeps the systemd watchdog fed, retries, reports the failure in the retained MQTT
status, and recovers by itself (storing a ``storage_failed`` alarm) when the storage works again.

The storage is really read-only: each scenario runs in a child process in its own user and mount namespace
(``unshare -rm``, no privileges needed) that mounts a tmpfs as the state folder and makes it read-only and writable
again. Two ways of failing:

- read-only from the start: ``mount -o remount,ro`` before the outbox is opened, ``remount,rw`` to recover;
- failing in use: the kernel refuses to remount a file system read-only while files are open on it for writing
  (the outbox holds its database open), so a read-only bind mount of the same tmpfs is laid over the folder: every
  file opened or created from then on is refused with EROFS, as on a card the kernel remounted read-only
  (with ``seq_block=1`` the outbox writes its sequence file at every append); ``umount`` of that layer recovers.

Run as a script, this file is the child: ``python tests/test_storage_failure.py <scenario> <folder> [args]``.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import LIN, wait_for

from kiosk.camera import Frame
from kiosk.config import KioskConfig
from kiosk.events.clock import ClockState
from kiosk.events.outbox import Outbox, StorageUnavailable
from kiosk.events.recorder import CANNOT_RECORD, STORAGE_FAILED, Outcome, Recorder
from kiosk.recognizer.faces import Box
from kiosk.recognizer.pipeline import Decision, FrameResult
from kiosk.terminal import STORAGE_RETRY_S, Terminal, TerminalView
from kiosk_contract.gallery import Gallery, Person

HERE = Path(__file__).resolve()
MONDAY_0721_WITA = datetime(2026, 11, 29, 23, 21, tzinfo=UTC)
PICTURE = np.random.default_rng(1).integers(0, 255, size=(360, 640, 3), dtype=np.uint8)
ALEX = "198001012005011001"
OBAMA = "196108041990031001"
EROFS = "Read-only file system"


# ---------------------------------------------------------------------------------------------------- the parent


def _namespaces() -> str | None:
    """Why read-only mounts cannot be made here, or None when ``unshare -rm`` can mount and remount a tmpfs."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare (util-linux) is not installed"
    probe = Path(tempfile.mkdtemp(prefix="kiosk-unshare-"))
    try:
        done = subprocess.run(
            [unshare, "-rm", "sh", "-c", f"mount -t tmpfs none {probe} && mount -o remount,ro {probe}"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -rm cannot run: {exc}"
    finally:
        probe.rmdir()
    if done.returncode != 0:
        return f"user and mount namespaces are not available (unshare -rm: {done.stderr.strip()[:200]})"
    return None


NO_NAMESPACES = _namespaces() if __name__ != "__main__" else None  # the child is in one already
in_namespace = pytest.mark.skipif(NO_NAMESPACES is not None, reason=f"needs real read-only mounts: {NO_NAMESPACES}")


def child(scenario: str, folder: Path, *args: str, timeout: float = 60.0) -> str:
    """Run one scenario of this file in its own user and mount namespace; its output when it passed."""
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy", PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    done = subprocess.run(
        ["unshare", "-rm", sys.executable, str(HERE), scenario, str(folder), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"scenario {scenario} failed (exit {done.returncode}):\n{out[-6000:]}"
    return out


@in_namespace
def test_a_terminal_on_storage_read_only_from_the_start_says_so_and_recovers(tmp_path: Path) -> None:
    assert "recovered" in child("terminal_read_only_at_start", tmp_path)


@in_namespace
def test_a_terminal_whose_storage_fails_in_use_never_crashes_and_recovers(tmp_path: Path) -> None:
    assert "recovered" in child("terminal_fails_in_use", tmp_path)


@in_namespace
def test_the_daemon_starts_on_a_read_only_state_folder_feeds_the_watchdog_and_recovers(tmp_path: Path) -> None:
    assert "recovered" in child("daemon_read_only_at_start", tmp_path)


@in_namespace
def test_the_publisher_keeps_running_and_its_retained_status_says_the_storage_failed(tmp_path: Path) -> None:
    from broker import Broker, available

    if not available():
        pytest.skip("mosquitto is not installed")
    with Broker(tmp_path / "broker") as broker:  # outside the namespace: mosquitto drops privileges as root
        assert "recovered" in child("publisher_fails_in_use", tmp_path / "run", broker.host, str(broker.port))


@pytest.mark.parametrize("language", ["id", "en"])
def test_the_storage_failed_screens_fit_at_every_size(language: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    import pygame

    from kiosk.display.pygame_screen import DEFAULT_SIZES, render, sample_states, text_fits

    pygame.font.init()
    states = sample_states(language)
    for name, screen in (("problem_storage_failed", "problem"), ("cannot_record_storage_failed", "cannot_record")):
        state = states[name]
        assert state.screen == screen
        for size in DEFAULT_SIZES:
            blocks = render(pygame.Surface(size), state)
            assert text_fits(blocks, size) == [], (name, size)
            assert all(b.rect[3] >= min(size) * 0.03 for b in blocks), (name, size, blocks)
            said = " ".join(b.text for b in blocks)
            assert ("daftar hadir manual" if language == "id" else "paper list") in said, said


def test_a_write_refused_for_lack_of_room_says_full_until_there_is_room_again(tmp_path: Path) -> None:
    """"Full" is not "failed": no manual-list advice, and the next person may try once acks made room or a while
    has passed (it used to block until something was stored, which nothing could be while blocked)."""
    from kiosk.terminal import FULL_HOLD_S, VIEW_REFRESH_S

    with Outbox.open(tmp_path / "outbox.sqlite") as outbox:
        rig = Rig(outbox)
        (first,) = rig.frame(LIN)
        assert first.status == "recorded"
        outbox.max_bytes = 1  # as if the outbox had grown to its limit
        (full,) = rig.frame(ALEX)
        assert (full.status, full.storage, full.message) == ("cannot_record", "full", CANNOT_RECORD)
        assert rig.view.blocking == "storage" and "storage failed" not in rig.terminal.describe()
        rig.mono += FULL_HOLD_S - 1
        assert rig.frame(ALEX) == [] and rig.view.blocking == "storage"
        rig.mono += 1
        assert [o.status for o in rig.frame(ALEX)] == ["cannot_record"], "tried again after the hold"
        assert rig.view.blocking == "storage"
        event = outbox.get(first.seq)  # type: ignore[arg-type]
        assert event is not None and outbox.acknowledge([(event.seq, event.event_id)]) == 1
        outbox.max_bytes = 10**9  # the acknowledged event's photo is gone: room again
        rig.mono += VIEW_REFRESH_S
        assert [o.status for o in rig.frame(ALEX)] == ["recorded"], "fewer events wait: tried at once"
        assert rig.view.problems == ()


# ---------------------------------------------------------------------------------------------------- the child


def mount(*args: str | Path) -> None:
    subprocess.run(["mount", *map(str, args)], check=True, capture_output=True, text=True)


def state_folder(root: Path, *, read_only: bool) -> Path:
    """A fresh tmpfs as the state folder (this process is in its own mount namespace)."""
    state = root / "state"
    state.mkdir(exist_ok=True)
    mount("-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", state)
    if read_only:
        mount("-o", "remount,ro", state)
    return state


def refuse_writes(state: Path) -> None:
    """From now on, files opened or created in ``state`` are refused with EROFS (see the module docstring)."""
    mount("--bind", state, state)
    mount("-o", "remount,bind,ro", state)


def accept_writes(state: Path) -> None:
    subprocess.run(["umount", str(state)], check=True)


def decision(nip: str, track: int = 1) -> Decision:
    return Decision(track=track, frame=10, t=0.3, nip=nip, best_nip=nip, distance=0.41, margin=0.2, frames_used=2,
                    latency_ms=300.0, clip_latency_ms=300.0, box=Box(100, 300, 300, 100))


class Faces:
    """The recognizer's place in the terminal: each processed frame decides the NIPs the scenario queued."""

    def __init__(self) -> None:
        zeros = np.zeros((1, 128), np.float32)
        self.gallery = Gallery([Person(nip, f"Person {nip[-3:]}", "Unit", zeros) for nip in (LIN, ALEX, OBAMA)])
        self.queued: list[str] = []
        self.processed = 0

    def process(self, frame: Frame) -> FrameResult:
        self.processed += 1
        nips, self.queued = self.queued, []
        return FrameResult([], [decision(n, i) for i, n in enumerate(nips)])


class Pins:
    def __init__(self) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.signalled: list[str] = []

    def events(self) -> queue.Queue[str]:
        return self.q

    def signal(self, status: str) -> None:
        self.signalled.append(status)

    def close(self) -> None:
        pass


class Screen:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.views: list[TerminalView] = [TerminalView()]

    def show(self, frame: Frame, result: FrameResult, outcomes: list[Outcome]) -> None:
        self.outcomes += outcomes

    def update(self, view: TerminalView) -> None:
        self.views.append(view)

    def close(self) -> None:
        pass


class Rig:
    """A terminal with its real recorder on a real outbox; retries run in the frame loop's thread here."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.mono = 1000.0
        self.faces, self.pins, self.screen = Faces(), Pins(), Screen()
        self.inputs: queue.Queue[str] = queue.Queue()
        self.recorder = Recorder(KioskConfig(), outbox, read_clock=lambda: ClockState(True, "ntp", "test"),
                                 now=lambda: MONDAY_0721_WITA)
        self.terminal = Terminal(
            KioskConfig(), self.faces, self.recorder, outbox, self.screen, self.pins,  # type: ignore[arg-type]
            inputs=self.inputs, monotonic=lambda: self.mono, now=lambda: MONDAY_0721_WITA,
            spawn=lambda work: work(),
        )  # fmt: skip

    def frame(self, *nips: str, pins: tuple[str, ...] = (), keys: tuple[str, ...] = ()) -> list[Outcome]:
        """One camera frame on which the recognizer decides ``nips`` (if it runs), after these inputs."""
        before = len(self.screen.outcomes)
        self.faces.queued = list(nips)  # a face not decided on this frame is gone by the next
        for name in pins:
            self.pins.q.put(name)
        for name in keys:
            self.inputs.put(name)
        self.terminal.frame(Frame(rgb=PICTURE, index=0, t=0.0))
        return self.screen.outcomes[before:]

    @property
    def view(self) -> TerminalView:
        return self.screen.views[-1]

    def stored(self) -> list[dict[str, Any]]:
        return [json.loads(e.payload) for e in self.outbox.pending(limit=100) if e.kind != "time_anchor"]


def show(*what: object) -> None:
    print(*what, flush=True)


def scenario_terminal_read_only_at_start(root: Path) -> None:
    state = state_folder(root, read_only=False)
    with Outbox.open(state / "outbox.sqlite", seq_block=1) as before:
        assert Rig(before).frame(LIN)[0].status == "recorded"  # then the kiosk restarts on a read-only card
    mount("-o", "remount,ro", state)
    outbox = Outbox.open_or_wait(state / "outbox.sqlite", seq_block=1)
    assert not outbox.available and EROFS in (outbox.problem or ""), outbox.problem
    rig = Rig(outbox)
    assert rig.frame(LIN) == [] and rig.faces.processed == 0, "blocked from the first frame: nothing recognised"
    assert rig.view.blocking == "storage_failed", rig.view
    assert rig.terminal.describe().startswith("storage failed: ") and EROFS in rig.terminal.describe()
    refused = rig.recorder.record(decision(LIN), PICTURE)  # a decision made all the same (the frame in flight)
    assert (refused.status, refused.message, refused.storage, refused.seq) == (
        "cannot_record", STORAGE_FAILED, "failed", None)
    assert rig.recorder.manual(ALEX, "masuk", PICTURE, None).storage == "failed"
    rig.frame(pins=("tamper_open",))  # an alarm that cannot be stored is named in the outage's alarm
    rig.frame(keys=("touch", "1"))
    assert rig.view.entry is None, "no NIP entry while nothing can be stored"
    rig.mono += STORAGE_RETRY_S
    rig.frame()
    assert rig.view.blocking == "storage_failed", "retried while still read-only: still down"

    mount("-o", "remount,rw", state)
    rig.mono += STORAGE_RETRY_S - 0.5
    rig.frame()
    assert rig.view.blocking == "storage_failed", "not retried before STORAGE_RETRY_S"
    rig.mono += 0.5
    rig.frame()
    assert outbox.available and rig.view.problems == (), rig.view
    assert "storage failed" not in rig.terminal.describe()
    _, alarm = rig.stored()
    assert (alarm["type"], alarm["alarm"]) == ("alarm", "storage_failed"), alarm
    detail = alarm["detail"]
    for part in ("storage failed at 2026-11-29T23:21:00Z for ", "1 face decision", "1 manual entry",
                 "alarms not stored: tamper at 2026-11-29T23:21:00Z", EROFS):
        assert part in detail, (part, detail)
    (again,) = rig.frame(LIN)
    assert again.status == "already", "the repeat guard was restored from the outbox once it could be read"
    (recorded,) = rig.frame(ALEX)
    assert (recorded.status, recorded.kind) == ("recorded", "masuk") and recorded.seq is not None
    assert [e.get("alarm") or e["person"]["nip"] for e in rig.stored()] == [LIN, "storage_failed", ALEX]
    outbox.close()
    show("recovered")


def scenario_terminal_fails_in_use(root: Path) -> None:
    state = state_folder(root, read_only=False)
    outbox = Outbox.open(state / "outbox.sqlite", seq_block=1)
    rig = Rig(outbox)
    (first,) = rig.frame(LIN)
    assert first.status == "recorded", first

    refuse_writes(state)
    (refused,) = rig.frame(ALEX)  # the terminal does not know yet: the write fails
    assert (refused.status, refused.storage, refused.message) == ("cannot_record", "failed", STORAGE_FAILED)
    assert rig.pins.signalled[-1] == "cannot_record"
    assert not outbox.available and rig.view.blocking == "storage_failed", rig.view
    processed = rig.faces.processed
    for _ in range(3):
        assert rig.frame(OBAMA) == []
    assert rig.faces.processed == processed, "no recognition while blocked"
    rig.mono += STORAGE_RETRY_S
    rig.frame()
    assert not outbox.available and EROFS in rig.terminal.describe(), rig.terminal.describe()
    with pytest.raises(StorageUnavailable):
        outbox.append("x", "alarm", b"{}")

    accept_writes(state)
    rig.mono += STORAGE_RETRY_S
    rig.frame()
    assert outbox.available and rig.view.problems == (), rig.view
    (again,) = rig.frame(ALEX)
    assert again.status == "recorded", again
    kinds = [e.get("alarm") or e["person"]["nip"] for e in rig.stored()]
    assert kinds == [LIN, "storage_failed", ALEX], kinds
    detail = rig.stored()[1]["detail"]
    assert "refused meanwhile: 1 face decision;" in detail and EROFS in detail, detail
    outbox.close()
    show("recovered")


class NotifySocket:
    """systemd's $NOTIFY_SOCKET: a datagram socket read on its own thread."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                if self._stop.is_set():  # every datagram sent before close() has been read
                    return

    def since(self, start: int, prefix: str) -> list[str]:
        return [m for m in self.messages[start:] if m.startswith(prefix)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.sock.close()


def scenario_daemon_read_only_at_start(root: Path) -> None:
    import cv2

    from kiosk import app, terminal
    from kiosk.config import load_config

    state = state_folder(root, read_only=True)
    frames = root / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((240, 320, 3), 60 + 40 * i, np.uint8))
    config = root / "kiosk.toml"
    config.write_text(
        f'[device]\nid = "kiosk-ro"\nstate_dir = "{state}"\n'
        f'[camera]\nsource = "replay"\npath = "{frames}"\nrealtime = true\nloop = true\nfps = 20\n'
        f'[recognizer]\ngallery = "{root}/none.kgal"\n'
        '[display]\nbackend = "pygame"\nfullscreen = false\n'
    )
    systemd = NotifySocket(root / "notify")
    os.environ |= {"NOTIFY_SOCKET": str(root / "notify"), "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    terminal.STORAGE_RETRY_S = 0.2  # the module's value, read at every refresh
    stop = threading.Event()
    ended: list[object] = []

    def run() -> None:
        try:
            ended.append(app.run(load_config(config), stop))
        except BaseException as exc:  # on today's main: the outbox cannot be opened, the daemon exits
            ended.append(exc)

    runner = threading.Thread(target=run, name="kiosk")
    runner.start()
    try:
        ready = wait_for(lambda: [m for m in systemd.messages if m.startswith("READY=1")] or ended, "READY=1")
        assert not ended, f"the daemon ended: {ended}"
        assert "STATUS=storage failed: " in ready[0] or wait_for(
            lambda: systemd.since(0, "STATUS=storage failed: "), "the storage problem in STATUS=")
        pings = len(systemd.since(0, "WATCHDOG=1"))
        wait_for(lambda: len(systemd.since(0, "WATCHDOG=1")) >= pings + 5, "watchdog pings while read-only")
        failed = [m for m in systemd.messages if "STATUS=storage failed: " in m]  # READY=1 carries the first
        assert not ended and EROFS in failed[-1]

        mark = len(systemd.messages)
        mount("-o", "remount,rw", state)
        wait_for(lambda: [m for m in systemd.since(mark, "STATUS=") if "storage failed" not in m] or ended,
                 "a STATUS= without the storage problem")
        assert not ended, f"the daemon ended: {ended}"
        status = [m for m in systemd.since(mark, "STATUS=") if "storage failed" not in m][-1]
        assert "problems: gallery" in status, status
    finally:
        stop.set()
        runner.join(20.0)
        systemd.close()
    assert not runner.is_alive() and ended == [0], ended
    assert systemd.messages[-1] == "STOPPING=1"
    with Outbox.open(state / "outbox.sqlite") as outbox:
        alarms = [json.loads(e.payload) for e in outbox.pending(limit=100) if e.kind == "alarm"]
    assert [a["alarm"] for a in alarms] == ["storage_failed"], alarms
    assert EROFS in alarms[0]["detail"] and "storage failed at " in alarms[0]["detail"]
    show("recovered")


def scenario_publisher_fails_in_use(root: Path, host: str, port: str) -> None:
    import paho.mqtt.client as mqtt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from paho.mqtt.enums import CallbackAPIVersion

    from kiosk.config import MqttConfig
    from kiosk.events.mqtt import Publisher, Topics
    from kiosk_contract import signing
    from kiosk_contract.acks import build_acks

    central = Ed25519PrivateKey.generate()
    cfg = MqttConfig(enabled=True, host=host, port=int(port), site="s1", topic_prefix="presensi/v1", keepalive_s=5,
                     reconnect_min_s=1.0, reconnect_max_s=1.0, status_every_s=3600)
    topics = Topics.of(cfg.topic_prefix, cfg.site, "kiosk-ro")
    got: list[tuple[str, bytes]] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sub-ro", protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    sub.on_connect = lambda c, *a: c.subscribe(f"{topics.base}/#", qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload)))
    sub.connect(host, int(port))
    sub.loop_start()
    wait_for(subscribed.is_set, "the subscriber")

    def statuses() -> list[dict[str, Any]]:
        return [json.loads(p) for t, p in list(got) if t == topics.status]

    state = state_folder(root, read_only=False)
    outbox = Outbox.open(state / "outbox.sqlite", seq_block=1)
    publisher = Publisher(outbox, cfg, "kiosk-ro", central_keys={signing.key_id_of(central): central.public_key()})
    publisher.start()
    try:
        first = outbox.append("0190a4c2-0000-7000-8000-000000000001", "attendance", b'{"n": 1}')
        publisher.wake()
        wait_for(lambda: outbox.counts()["published"] == 1, "the first event published")
        wait_for(statuses, "the status published at connect")
        assert statuses()[-1]["storage"] == {"ok": True, "problem": None, "since": None}

        refuse_writes(state)
        with pytest.raises(StorageUnavailable):
            outbox.append("0190a4c2-0000-7000-8000-000000000002", "attendance", b'{"n": 2}')
        down = wait_for(lambda: [s for s in statuses() if not s["storage"]["ok"]], "a status saying the storage failed")
        storage = down[-1]["storage"]
        assert EROFS in storage["problem"] and storage["since"].endswith("Z"), storage
        assert down[-1]["counts"]["published"] == 1, "the last counts known"
        (ack,) = build_acks("kiosk-ro", [(first.seq, first.event_id)], central)
        sub.publish(topics.ack, signing.wire(ack), qos=1).wait_for_publish(5)  # cannot be recorded now
        wait_for(lambda: "ack of 1 event(s) not recorded" in (publisher.status()["last_error"] or ""),
                 "the ack refused by the storage")
        assert publisher._thread is not None and publisher._thread.is_alive() and publisher.connected

        accept_writes(state)
        assert outbox.retry()
        wait_for(lambda: statuses()[-1]["storage"]["ok"], "a status saying the storage works again")
        assert outbox.get(first.seq).state == "published", "the ack was lost: the event goes out again later"  # type: ignore[union-attr]
        sub.publish(topics.ack, signing.wire(ack), qos=1).wait_for_publish(5)
        wait_for(lambda: outbox.counts()["acknowledged"] == 1, "the repeated ack recorded")
    finally:
        publisher.close()
        outbox.close()
        sub.loop_stop()
    show("recovered")


if __name__ == "__main__":
    name, folder, *rest = sys.argv[1:]
    started = time.monotonic()
    globals()[f"scenario_{name}"](Path(folder), *rest)
    show(f"scenario {name} passed in {time.monotonic() - started:.1f} s")
