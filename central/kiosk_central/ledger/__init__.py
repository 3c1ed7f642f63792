"""The ledger's tables as Django models: Django's migrations own the schema; ``kiosk_central.store`` keeps its
hand-tuned SQL on the same tables for ingest."""
