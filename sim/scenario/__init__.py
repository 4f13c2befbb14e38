"""turnsim's scenarios: files that drive conversations and state what must hold.

``steps`` is the contract of a step; ``actions``, ``writers`` (the command-line
persister as a first writer) and ``expectations`` define the kinds (each one class:
fields, parser, handler, renderer); ``model`` holds the scenario values
and ``STEP_KINDS``. ``parse`` (YAML in, with positions) and ``render`` (YAML out) are the
only modules that know YAML. ``director`` plays the steps against a world, ``runner``
runs a scenario and checks ``invariants``, ``result`` is what a run reports; ``explore``
and ``shrink`` search seeds and smaller scenarios: ``batches`` is the work explore hands
out, ``executors`` (this process, worker processes) and ``cluster`` (Dask, the only
module that imports it) run it, ``exploration`` holds what was found (groups, reports,
merging shards) and ``failure_db`` remembers failing seeds. ``report`` (rich) and
``pytest_plugin`` present runs; ``explore_html`` (Jinja2, matplotlib) writes an
exploration as a web page. ``docs/scenarios.md`` is the reference.
"""
