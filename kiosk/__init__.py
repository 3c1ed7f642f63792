"""Face-recognition attendance kiosk for Indonesian civil servants (ASN)."""

__version__ = "0.2.0"
