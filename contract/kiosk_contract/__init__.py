"""The wire contract shared by the kiosk, the central server and the image script (docs/architecture.md).

Events, evidence messages, acks and commands are defined as JSON Schema files in ``kiosk_contract/schemas``; this
package is the one implementation of what both sides must agree on: canonical encoding and Ed25519 signing, what a
NIP is, punch kinds, topics, acks, commands, the gallery file and its sealing, and bounded JSON parsing. It imports
neither the device (``kiosk``) nor the server (``kiosk_central``).
"""

__version__ = "0.5.0"
