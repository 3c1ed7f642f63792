"""The ledger's tables (see kiosk_central.store for what each holds)."""
