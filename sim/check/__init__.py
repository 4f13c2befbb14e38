"""``turnsim check``: verify the invariants on evidence turnsim did not produce itself.

From a JSON log (:mod:`sim.check.log_check`): every invariant, on the history the log
holds and the store image rebuilt from it. From a database alone
(:mod:`sim.check.db_check`): those a final state can prove, and a list of those it cannot
judge, with why. Each finding carries the minimal evidence that proves it: ``seq`` numbers
of the log's events, or primary keys of the database's rows (:mod:`sim.check.report`).

This package sits above ``sim.scenario`` (whose invariant checkers it runs), ``sim.logs``
(reading and replaying logs) and ``sim.ops`` (opening database files), below the CLI.
"""
