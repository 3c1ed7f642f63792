"""The central server's side: the ledger that subscribes to every kiosk, stores its events once, acknowledges them,
and turns them into daily and monthly attendance recaps with the TPP deduction (docs/central.md)."""

__version__ = "0.2.0"
