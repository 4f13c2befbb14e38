"""turnsim's scenarios: files that drive conversations and state what must hold.

``steps`` is the contract of a step and its ``Field`` definitions; ``actions``,
``writers`` (the command-line persister as a first writer) and ``expectations`` define the
kinds (each one class: fields, parser, handler, renderer); ``model`` holds the scenario
values, the other fields and ``STEP_KINDS``. ``reader``, ``parse`` and ``parse_steps``
(YAML in, with positions, templates and ``repeat`` expanded) and ``render`` (YAML out) are
the only modules that know YAML; ``schema`` is the JSON Schema generated from the fields,
``template`` what ``turnsim new`` writes. ``director`` plays the steps against a world,
``runner`` runs a scenario and checks ``invariants``, ``result`` is what a run reports.
``explore`` searches seeds: ``batches`` is the work it hands out, ``executors`` (this
process, worker processes) and ``cluster`` (Dask, the only module that imports it) run it,
``exploration`` holds what was found (groups, reports, merging shards) and ``failure_db``
remembers failing seeds; ``shrink`` finds smaller scenarios, ``mutation`` which bug
variant each scenario catches. ``report``
(rich) and ``explore_html`` (Jinja2, matplotlib) present runs. The pytest plugin is
:mod:`sim.pytest_plugin`, above this package. ``docs/scenarios.md`` is the reference,
``docs/authoring.md`` the guide.
"""
