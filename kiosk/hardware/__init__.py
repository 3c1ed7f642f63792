"""The pins boundary: LEDs, a buzzer, keys, a PIR and a case switch on the Pi's GPIO header.

:func:`open_pins` gives a :class:`~kiosk.hardware.pins.Pins`; :class:`~kiosk.hardware.pins.NullPins` stands in on
machines without pins. gpiozero is imported only inside the gpiozero backend, when it is opened.
"""

from kiosk.hardware.pins import (
    EVENTS,
    GpioPins,
    NullPins,
    Pins,
    open_pins,
    validate_pins,
)

__all__ = ["EVENTS", "GpioPins", "NullPins", "Pins", "open_pins", "validate_pins"]
