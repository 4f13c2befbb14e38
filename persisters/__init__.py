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
* ``schema``, ``migration``: the SQLite schema and projection SQL; the additive migration.
* ``group_commit``, ``sqlite_database``, ``sqlite_store``: batching writes into one
  transaction; one SQLite file (connection, settings, checkpointer); the SQLite store.
* ``server_sql``, ``server_database``, ``server_store``, ``postgres_store``,
  ``mysql_store``: the stores on a database server: the SQL both dialects share, one
  namespace (dialect, pool, transactions), the store itself (group commit, write-once in
  one statement, scratch namespaces), and each dialect (psycopg 3, PyMySQL;
  a driver is imported only when its store opens).
* ``stores``: which store a ``--store`` spec names (built-in, DSN, ``module:factory``,
  ``turnsim.stores`` entry point), and opening it.
* ``contract``, ``testing``: the conformance kit: the contract suite as plain checks
  filed under rules, and its pytest form (``from persisters.testing import *``).
"""
