"""Errors the kiosk reports to people: each says what is wrong, where, and what to do (the shared ones come from
the contract)."""

from kiosk_contract.errors import ConfigError, GalleryError, KioskError

__all__ = ["CameraError", "ConfigError", "GalleryError", "ImageError", "KioskError", "ModelError", "TrialError"]


class CameraError(KioskError, OSError):
    """The frame source cannot be opened or stopped delivering frames."""


class ImageError(KioskError, OSError):
    """An image file cannot be read or decoded."""


class ModelError(KioskError, FileNotFoundError):
    """The dlib model files cannot be found or loaded."""


class TrialError(KioskError, ValueError):
    """A liveness field trial's clip or label cannot be used (kiosk/liveness_trial.py)."""
