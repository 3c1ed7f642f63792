"""Attendance events: the durable on-device outbox that keeps every event until the server acknowledges it."""
