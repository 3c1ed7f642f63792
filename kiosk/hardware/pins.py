"""LEDs, a buzzer, keys, a PIR and a case switch behind one small interface.

A :class:`Pins` shows what happened to a punch (:meth:`Pins.signal`) and hands inputs to the main loop
(:meth:`Pins.events`). :class:`GpioPins` drives real pins through gpiozero, which is imported only when it is
opened; :class:`NullPins` is for machines without pins. Every part is optional: a pin of ``None`` means the
part is absent. gpiozero runs callbacks and blinking on its own threads and the buzzer plays on a worker thread
here, so neither :meth:`Pins.signal` nor a callback ever blocks the caller; callbacks only put event names on a
bounded queue (dropping the oldest when full).

Example::

    pins = open_pins(led_green=17, led_red=27, buzzer=18, key_masuk=5)
    pins.signal("recorded")          # green LED for a moment and one short high beep
    event = pins.events().get(timeout=0.1)   # e.g. "key_masuk"
    pins.close()
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Every event name :meth:`Pins.events` can yield.
EVENTS = ("key_masuk", "key_pulang", "key_fallback", "motion", "no_motion", "tamper_open", "tamper_closed")

GOOD = frozenset({"recorded", "already", "pending_review"})
BAD = frozenset({"not_recognised", "not_live", "cannot_record", "outside_hours", "limited"})

# A tone pattern: (frequency in Hz, or None for silence; seconds).
Pattern = tuple[tuple[float | None, float], ...]
HIGH_HZ = 2000.0
LOW_HZ = 400.0
PATTERNS: dict[str, Pattern] = {
    "recorded": ((HIGH_HZ, 0.08),),
    "already": ((HIGH_HZ, 0.06), (None, 0.08), (HIGH_HZ, 0.06)),
    "failure": ((LOW_HZ, 0.5),),
}
BUZZER_DUTY = 0.5  # a square wave: loudest for a passive piezo

MIN_BCM = 2  # 0 and 1 are the HAT EEPROM's I2C pins
MAX_BCM = 27


def pattern_for(status: str) -> Pattern:
    """The tone pattern for an outcome status: one high beep, two beeps for a repeat or a manual entry sent for
    review, one long low tone else."""
    if status == "recorded":
        return PATTERNS["recorded"]
    if status in ("already", "pending_review"):
        return PATTERNS["already"]
    return PATTERNS["failure"]


PART_NAMES = ("led_green", "led_red", "rgb", "buzzer", "key_masuk", "key_pulang", "key_fallback", "pir", "tamper")


def validate_pins(parts: dict[str, int | None]) -> dict[str, int]:
    """Return the configured parts (pin not None); raise ValueError for a pin outside BCM 2-27 or used twice."""
    used: dict[int, str] = {}
    out: dict[str, int] = {}
    for part, pin in parts.items():
        if pin is None:
            continue
        if isinstance(pin, bool) or not isinstance(pin, int) or not MIN_BCM <= pin <= MAX_BCM:
            raise ValueError(f"{part}: pin {pin!r} is not a BCM GPIO number {MIN_BCM}-{MAX_BCM}")
        if pin in used:
            raise ValueError(f"pin {pin} is used by both {used[pin]} and {part}: give each part its own pin")
        used[pin] = part
        out[part] = pin
    return out


class Pins(Protocol):
    """The kiosk's lights, buzzer and inputs."""

    dropped: int  # events dropped because the queue was full

    def signal(self, status: str) -> None:
        """Show an outcome status (see ``kiosk.events.recorder.Status``); returns at once."""
        ...

    def events(self) -> queue.Queue[str]:
        """The queue the inputs' event names arrive on (see :data:`EVENTS`)."""
        ...

    def close(self) -> None:
        """Release every pin; safe to call more than once."""
        ...


class NullPins:
    """No pins: :meth:`signal` does nothing and :meth:`events` never yields."""

    def __init__(self) -> None:
        self._events: queue.Queue[str] = queue.Queue(maxsize=1)
        self.dropped = 0

    def signal(self, status: str) -> None:
        pass

    def events(self) -> queue.Queue[str]:
        return self._events

    def close(self) -> None:
        pass


class GpioPins:
    """Real pins through gpiozero (lgpio on the Pi; set ``LG_WD`` to the service's runtime directory).

    Pass BCM pin numbers, or None for an absent part. ``rgb`` is (red, green, blue) pins of one RGB LED, used
    instead of or besides the separate green and red LEDs.
    """

    def __init__(
        self,
        *,
        led_green: int | None = None,
        led_red: int | None = None,
        rgb: Sequence[int] | None = None,
        buzzer: int | None = None,
        key_masuk: int | None = None,
        key_pulang: int | None = None,
        key_fallback: int | None = None,
        pir: int | None = None,
        tamper: int | None = None,
        led_seconds: float = 1.0,
        bounce_seconds: float | None = 0.05,
        queue_size: int = 64,
    ) -> None:
        if rgb is not None and len(rgb) != 3:
            raise ValueError(f"rgb: give three pins (red, green, blue), not {list(rgb)!r}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size}")
        r, g, b = rgb if rgb is not None else (None, None, None)
        self.parts = validate_pins(
            {
                "led_green": led_green,
                "led_red": led_red,
                "rgb_red": r,
                "rgb_green": g,
                "rgb_blue": b,
                "buzzer": buzzer,
                "key_masuk": key_masuk,
                "key_pulang": key_pulang,
                "key_fallback": key_fallback,
                "pir": pir,
                "tamper": tamper,
            }
        )
        from gpiozero import LED, RGBLED, Button, DigitalInputDevice, PWMOutputDevice

        self.led_seconds = led_seconds
        self.dropped = 0  # events dropped because the main loop fell behind
        self._events: queue.Queue[str] = queue.Queue(maxsize=queue_size)
        self._put_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._closed = False
        self._devices: list[Any] = []
        self._tones: queue.Queue[Pattern | None] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.green: Any = None
        self.red: Any = None
        self.rgb: Any = None
        self.buzzer: Any = None
        try:
            if led_green is not None:
                self.green = self._add(LED(led_green))
            if led_red is not None:
                self.red = self._add(LED(led_red))
            if rgb is not None:
                self.rgb = self._add(RGBLED(r, g, b, pwm=False))
            if buzzer is not None:
                self.buzzer = self._add(PWMOutputDevice(buzzer, initial_value=0, frequency=HIGH_HZ))
            for name, pin in (("key_masuk", key_masuk), ("key_pulang", key_pulang), ("key_fallback", key_fallback)):
                if pin is not None:
                    key = self._add(Button(pin, pull_up=True, bounce_time=bounce_seconds))
                    key.when_pressed = self._emitter(name)
            if pir is not None:
                sensor = self._add(DigitalInputDevice(pir, pull_up=False, bounce_time=None))
                sensor.when_activated = self._emitter("motion")
                sensor.when_deactivated = self._emitter("no_motion")
            if tamper is not None:
                # A case switch closed (to ground) while the case is shut: released means opened.
                switch = self._add(Button(tamper, pull_up=True, bounce_time=bounce_seconds))
                switch.when_pressed = self._emitter("tamper_closed")
                switch.when_released = self._emitter("tamper_open")
                if not switch.is_pressed:
                    self._put("tamper_open")
        except BaseException:
            self.close()
            raise
        if self.buzzer is not None:
            self._worker = threading.Thread(target=self._play_loop, name="kiosk-buzzer", daemon=True)
            self._worker.start()

    def _add(self, device: Any) -> Any:
        self._devices.append(device)
        return device

    def _emitter(self, name: str) -> Callable[[], None]:
        return lambda: self._put(name)

    def _put(self, name: str) -> None:
        """Runs on gpiozero's threads: only queues the event, dropping the oldest when the queue is full."""
        with self._put_lock:
            while True:
                try:
                    self._events.put_nowait(name)
                    return
                except queue.Full:
                    try:
                        self._events.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass

    def events(self) -> queue.Queue[str]:
        return self._events

    def signal(self, status: str) -> None:
        if self._closed:
            return
        good = status in GOOD
        if status not in GOOD | BAD:
            log.warning("unknown outcome status %r: signalling a failure", status)
        on, off = (self.green, self.red) if good else (self.red, self.green)
        if off is not None:
            off.off()
        if on is not None:
            on.blink(on_time=self.led_seconds, off_time=0, n=1, background=True)
        if self.rgb is not None:
            colour = (0, 1, 0) if good else (1, 0, 0)
            self.rgb.blink(on_time=self.led_seconds, off_time=0, on_color=colour, n=1, background=True)
        if self.buzzer is not None:
            self._queue_tone(pattern_for(status))

    def _queue_tone(self, pattern: Pattern | None) -> None:
        """Keep only the newest pending pattern: a burst of outcomes must not queue seconds of beeping."""
        while True:
            try:
                self._tones.put_nowait(pattern)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._tones.get_nowait()

    def _play_loop(self) -> None:
        while not self._stop.is_set():
            pattern = self._tones.get()
            if pattern is None:
                return
            try:
                for hz, seconds in pattern:
                    if hz is None:
                        self.buzzer.value = 0
                    else:
                        self.buzzer.frequency = hz
                        self.buzzer.value = BUZZER_DUTY
                    if self._stop.wait(seconds):
                        break
                self.buzzer.value = 0
            except Exception:  # a closed or failing buzzer must not kill the loop silently
                if self._stop.is_set():
                    return
                log.exception("buzzer pattern failed")

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._worker is not None:
            self._queue_tone(None)  # wakes the worker to stop
            self._worker.join(timeout=2)
        for device in reversed(self._devices):
            try:
                device.close()
            except Exception:
                log.exception("closing %r failed", device)
        self._devices.clear()

    def __enter__(self) -> GpioPins:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_pins(**parts: Any) -> Pins:
    """Open the parts with gpiozero (the keyword arguments of :class:`GpioPins`), or give :class:`NullPins` when
    no pin is configured. Raises ValueError for a bad or repeated pin, before any pin is touched."""
    if all(parts.get(name) is None for name in PART_NAMES):
        return NullPins()
    return GpioPins(**parts)
