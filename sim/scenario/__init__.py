"""turnsim's scenarios: files that drive conversations and state what must hold.

``steps`` is the contract of a step and its ``Field`` definitions; ``actions`` and
``expectations`` define the kinds (each one class: fields, parser, handler, renderer);
``model`` holds the scenario values, the other fields and ``STEP_KINDS``. ``reader``,
``parse`` and ``parse_steps`` (YAML in, with positions, templates and ``repeat``
expanded) and ``render`` (YAML out) are the only modules that know YAML; ``schema`` is the
JSON Schema generated from the fields, ``template`` what ``turnsim new`` writes.
``director`` plays the steps against a world, ``runner`` runs a scenario and checks
``invariants``, ``result`` is what a run reports; ``explore`` and ``shrink`` search seeds
and smaller scenarios, ``mutation`` which bug variant each scenario catches; ``report``
(rich) presents runs. The pytest plugin is :mod:`sim.pytest_plugin`, above this package.
``docs/scenarios.md`` is the reference, ``docs/authoring.md`` the guide.
"""
