"""Errors reported to people: each says what is wrong, where, and what to do. Shared by device, server and image
script, so that each catches one base class."""


class KioskError(Exception):
    """Base of every error the kiosk, the central server and the image script raise on purpose; its message is meant
    for the operator."""


class ConfigError(KioskError, ValueError):
    """A configuration or data file is missing, unreadable or invalid; ``problems`` lists every finding."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the configuration:\n{lines}")


class GalleryError(KioskError):
    """A gallery file is missing, truncated, tampered with, or of an unknown version."""
