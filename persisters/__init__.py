"""Persistence, the product slice under test: turns, stores, pipelines, schema, migration.

Layer 0: imports nothing from ``sim``. Its modules, each importing only those above it:

* ``errors``, ``model``: the store errors; value objects and the metadata projection.
* ``store``: the store contract (``TurnStore``, ``ConversationIndex``, ``WriteQueue``) and
  the rules every store applies; ``memory_store`` is the reference implementation.
* ``pipeline``, ``readpath``: the save pipelines (snapshot hook, final persister) and how
  reports read a turn's runtime.
* ``schema``, ``blocks``, ``normalized_schema``, ``migration``: turnsim's SQLite layout
  and the projection SQL; the real server's content-addressed blocks (its hash, a turn as
  block rows and back); its normalized layout; the additive migration of either layout.
* ``group_commit``, ``sqlite_database``, ``sqlite_store``, ``normalized_store``: batching
  writes into one transaction; one SQLite file (connection, settings, checkpointer); the
  SQLite store; the same store on the real server's layout.
* ``stores``: which store a ``--store`` spec names, and which a database file is of.
"""
