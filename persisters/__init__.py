"""Persistence, the product slice under test: turns, stores, pipelines, schema, migration.

Layer 0: imports nothing from ``sim``. Its modules, each importing only those above it:

* ``errors``, ``model``: the store errors; value objects and the metadata projection.
* ``store``: the store contract (``TurnStore``, ``ConversationIndex``, ``WriteQueue``) and
  the rules every store applies; ``memory_store`` is the reference implementation.
* ``pipeline``, ``readpath``: the save pipelines (snapshot hook, final persister) and how
  reports read a turn's runtime.
* ``schema``, ``migration``: the SQLite schema and projection SQL; the additive migration.
* ``group_commit``, ``sqlite_database``, ``sqlite_store``: batching writes into one
  transaction; one SQLite file (connection, settings, checkpointer); the SQLite store.
* ``stores``: which store a ``--store`` spec names, and opening it.
"""
