"""The HR review page of the central ledger (`kiosk-central web`, docs/central.md "HR review"): reviewers log in,
look at the review queue with its evidence photos, and accept a case as attendance or reject it, each decision
audited. Standard library only: server-rendered HTML forms over http.server; TLS belongs to a reverse proxy."""
