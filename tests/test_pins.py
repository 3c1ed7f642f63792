"""The pins boundary against gpiozero's mock pins: keys, PIR, case switch, LEDs, buzzer, queue, validation."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

gpiozero = pytest.importorskip("gpiozero")
from gpiozero import Device  # noqa: E402
from gpiozero.pins.mock import MockFactory, MockPWMPin  # noqa: E402

from kiosk.hardware import GpioPins, NullPins, open_pins, validate_pins  # noqa: E402
from kiosk.hardware.pins import BUZZER_DUTY, HIGH_HZ, LOW_HZ  # noqa: E402

TIMEOUT = 2.0


class RecordingPin(MockPWMPin):
    """A mock PWM pin that also remembers every frequency it was given (its state history has no frequency)."""

    def __init__(self, factory: MockFactory, info: object) -> None:
        super().__init__(factory, info)
        self.frequencies: list[float | None] = []

    def _set_frequency(self, value: float | None) -> None:
        super()._set_frequency(value)
        self.frequencies.append(value)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory(pin_class=RecordingPin)
    Device.pin_factory = f
    yield f
    f.reset()
    Device.pin_factory = None


def wait_for(cond: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def states(pin: MockPWMPin) -> list[float]:
    return [float(s.state) for s in pin.states]


@pytest.mark.parametrize(
    ("part", "name"), [("key_masuk", "key_masuk"), ("key_pulang", "key_pulang"), ("key_fallback", "key_fallback")]
)
def test_key_press_queues_event(factory: MockFactory, part: str, name: str) -> None:
    kwargs: dict[str, Any] = {part: 5}
    with GpioPins(**kwargs) as pins:
        factory.pin(5).drive_low()  # buttons pull up: pressed is low
        assert pins.events().get(timeout=TIMEOUT) == name
        factory.pin(5).drive_high()
        with pytest.raises(queue.Empty):
            pins.events().get(timeout=0.05)  # release sends nothing


def test_pir_motion_and_no_motion(factory: MockFactory) -> None:
    with GpioPins(pir=23) as pins:
        factory.pin(23).drive_high()
        assert pins.events().get(timeout=TIMEOUT) == "motion"
        factory.pin(23).drive_low()
        assert pins.events().get(timeout=TIMEOUT) == "no_motion"


def test_tamper_switch(factory: MockFactory) -> None:
    with GpioPins(tamper=24, bounce_seconds=None) as pins:
        assert pins.events().get(timeout=TIMEOUT) == "tamper_open"  # nothing holds the pin low yet
        factory.pin(24).drive_low()  # the case is shut: the switch holds the pin low
        assert pins.events().get(timeout=TIMEOUT) == "tamper_closed"
        factory.pin(24).drive_high()
        assert pins.events().get(timeout=TIMEOUT) == "tamper_open"


def test_tamper_open_at_start_is_reported(factory: MockFactory) -> None:
    with GpioPins(tamper=24) as pins:  # pulled up, nothing holding it low: the case is open
        assert pins.events().get(timeout=TIMEOUT) == "tamper_open"


@pytest.mark.parametrize("status", ["recorded", "already"])
def test_good_status_blinks_green(factory: MockFactory, status: str) -> None:
    with GpioPins(led_green=17, led_red=27, led_seconds=0.05) as pins:
        green, red = factory.pin(17), factory.pin(27)
        pins.signal(status)
        wait_for(lambda: len(green.states) >= 3)
        green.assert_states([False, True, False])
        assert True not in [s.state for s in red.states]


@pytest.mark.parametrize("status", ["not_recognised", "cannot_record", "outside_hours"])
def test_bad_status_blinks_red(factory: MockFactory, status: str) -> None:
    with GpioPins(led_green=17, led_red=27, led_seconds=0.05) as pins:
        green, red = factory.pin(17), factory.pin(27)
        pins.signal(status)
        wait_for(lambda: len(red.states) >= 3)
        red.assert_states([False, True, False])
        assert True not in [s.state for s in green.states]


def test_rgb_led_colour(factory: MockFactory) -> None:
    with GpioPins(rgb=(9, 10, 11), led_seconds=0.05) as pins:
        r, g = factory.pin(9), factory.pin(10)
        pins.signal("recorded")
        wait_for(lambda: True in [s.state for s in g.states] and not g.state)
        assert True not in [s.state for s in r.states]
        pins.signal("cannot_record")
        wait_for(lambda: True in [s.state for s in r.states] and not r.state)


def test_led_stays_on_for_led_seconds(factory: MockFactory) -> None:
    with GpioPins(led_green=17, led_seconds=5) as pins:
        pins.signal("recorded")
        wait_for(lambda: bool(factory.pin(17).state))
    assert not factory.pin(17).state  # close() turns it off at once


def tones(pin: RecordingPin) -> list[float | None]:
    return [f for f in pin.frequencies if f is not None]


@pytest.mark.parametrize(
    ("status", "beeps", "hz"),
    [("recorded", 1, HIGH_HZ), ("already", 2, HIGH_HZ), ("not_recognised", 1, LOW_HZ), ("cannot_record", 1, LOW_HZ)],
)
def test_buzzer_patterns(factory: MockFactory, status: str, beeps: int, hz: float) -> None:
    with GpioPins(buzzer=18) as pins:
        pin = factory.pin(18)
        assert isinstance(pin, RecordingPin)
        pin.clear_states()
        pin.frequencies.clear()
        pins.signal(status)  # returns at once: the worker thread plays the tone
        wait_for(lambda: states(pin).count(BUZZER_DUTY) == beeps and states(pin)[-1] == 0)
        assert set(tones(pin)) == {hz}
        assert states(pin)[-1] == 0  # silent afterwards


def test_buzzer_failure_is_longer_and_lower_than_recorded(factory: MockFactory) -> None:
    with GpioPins(buzzer=18) as pins:
        pin = factory.pin(18)
        assert isinstance(pin, RecordingPin)

        def play(status: str) -> tuple[float, float]:
            pin.clear_states()
            pin.frequencies.clear()
            pins.signal(status)
            wait_for(lambda: BUZZER_DUTY in states(pin) and states(pin)[-1] == 0)
            on = next(s for s in pin.states if s.state == BUZZER_DUTY)
            off = next(s for s in pin.states if s.timestamp > on.timestamp and s.state == 0)
            return tones(pin)[-1] or 0.0, off.timestamp - on.timestamp  # mock pin timestamps, not asserts on wall time

        high, short = play("recorded")
        low, long = play("not_recognised")
        assert high > low
        assert long > short


def test_full_queue_drops_oldest_and_counts(factory: MockFactory) -> None:
    with GpioPins(key_masuk=5, key_pulang=6, queue_size=2, bounce_seconds=None) as pins:
        for pin in (5, 6, 5):
            factory.pin(pin).drive_low()
            factory.pin(pin).drive_high()
        wait_for(lambda: pins.dropped == 1)
        assert [pins.events().get_nowait(), pins.events().get_nowait()] == ["key_pulang", "key_masuk"]


def test_duplicate_pin_names_both_parts(factory: MockFactory) -> None:
    with pytest.raises(ValueError, match=r"pin 17 is used by both led_green and key_masuk"):
        open_pins(led_green=17, key_masuk=17)


@pytest.mark.parametrize("pin", [0, 1, 28, -3, True])
def test_pin_out_of_range(pin: int) -> None:
    with pytest.raises(ValueError, match="BCM GPIO number 2-27"):
        validate_pins({"buzzer": pin})


def test_rgb_needs_three_pins(factory: MockFactory) -> None:
    with pytest.raises(ValueError, match="three pins"):
        GpioPins(rgb=(9, 10))


def test_close_is_idempotent_and_closes_devices(factory: MockFactory) -> None:
    pins = GpioPins(led_green=17, led_red=27, buzzer=18, key_masuk=5, pir=23, tamper=24)
    pins.signal("recorded")
    pins.close()
    pins.close()
    assert all(d.closed for d in (pins.green, pins.red, pins.buzzer))
    assert pins._worker is not None and not pins._worker.is_alive()
    pins.signal("recorded")  # ignored after close
    GpioPins(led_green=17, key_masuk=5).close()  # the pins are free again


def test_no_pins_gives_null_pins() -> None:
    pins = open_pins()
    assert isinstance(pins, NullPins)
    pins.signal("recorded")
    with pytest.raises(queue.Empty):
        pins.events().get(timeout=0.01)
    pins.close()
    pins.close()
