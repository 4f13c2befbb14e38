"""Database operations behind ``turnsim db``: ``turnsim db X`` is ``sim.ops.X``.

Layer 3 (never imports ``sim.scenario``, ``sim.logs`` or ``sim.api``). ``files`` opens,
inspects, backs up and compacts a database file and refuses what it cannot use;
``migrate`` is the whole ``db migrate`` operation; ``doctor`` runs the checks that
``checks`` defines; ``samples`` writes old databases from the eras ``old_writers``
describes. No rendering here: the CLI draws the reports.
"""
