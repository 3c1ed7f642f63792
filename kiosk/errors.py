"""Errors the kiosk reports to people: each says what is wrong, where, and what to do."""


class KioskError(Exception):
    """Base of every error the kiosk raises on purpose; its message is meant for the operator."""


class ConfigError(KioskError, ValueError):
    """The configuration file is missing, unreadable or invalid; ``problems`` lists every finding."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the configuration:\n{lines}")


class GalleryError(KioskError):
    """The gallery file is missing, truncated, tampered with, or of an unknown version."""


class CameraError(KioskError, OSError):
    """The frame source cannot be opened or stopped delivering frames."""


class ImageError(KioskError, OSError):
    """An image file cannot be read or decoded."""


class ModelError(KioskError, FileNotFoundError):
    """The dlib model files cannot be found or loaded."""
