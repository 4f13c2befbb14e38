"""The simulator: a seeded kernel, conversation actors, the engine, and the world that wires them.

Layer 2: imports ``persisters`` and layer 1 (``sim.errors``, ``sim.events``,
``sim.seeding``), never the tools above it. Its modules:

* ``kernel``: virtual clock and seeded scheduler; every simulated task runs under it.
* ``world``: the composition root, the one module that wires kernel, actors, engine,
  recorder and stores (actors and the engine only see the small Protocols below).
* ``conversation``: the actor (supervisor, mailbox, prompt queue), typed against
  ``ConversationEnv``.
* ``inference``: where a turn's runtime is bound (``Binding``, ``bind``) and how one
  inference reaches the snapshot hook and the final persister (``execute``).
* ``engine``: the fake engine (phases, tool rounds, latency), typed against ``EngineEnv``.
* ``profiles``, ``faults``, ``variants``, ``recorder``: profile registry, named fault
  points, bug variants (one substitution each), the run's history.
"""
