"""The event catalogue: every log event turnsim writes, as data."""
