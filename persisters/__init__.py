"""Persistence: the TurnStore contract, its implementations, and the save pipelines."""
