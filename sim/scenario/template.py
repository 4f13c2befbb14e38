"""The commented scenario ``turnsim new NAME`` writes: a file that runs and passes as it
is, and says on each line what can be changed (``docs/scenarios.md`` has the rest)."""

from __future__ import annotations

import re

#: What a new scenario's name may be: it prefixes conversation ids and names the file.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

_TEMPLATE = """\
{modeline}# A turnsim scenario: `turnsim run {file}` runs it, `pytest` collects it.
# Reference: docs/scenarios.md. Every field below is optional unless it says required.
name: {name}                    # required; prefixes the stored conversation ids
description: what this scenario shows
seed: 1                         # one seed decides ids, latencies and interleavings

profiles:                       # required: slug -> the runtime it resolves to
  inventory: {{runtime_key: inventory@v1}}
  planner: {{runtime_key: planner@v1, latency_ms: 200}}   # also jitter_ms, tool_rounds, replies

conversations:                  # required: name -> initial profile
  c1: {{profile: inventory, session: s1}}
  # user: {{profile: planner, count: 50}}   # a template: user1 .. user50; a step that
  #                                       # names `user` runs once for each of them

steps:                          # required; run in order
  - send: {{conv: c1, turn: t1, prompt: "How many widgets are in stock?"}}
  - switch_profile: {{conv: c1, profile: planner}}
  - send: {{conv: c1, turn: t2, prompt: "Plan the restock", wait: false}}   # once it started
  - switch_profile: {{conv: c1, profile: inventory}}                     # while t2 is in flight
  - wait_idle: c1
  # - repeat:                   # the same steps again: {{i}} in a turn name is the round
  #     times: 3
  #     steps:
  #       - send: {{conv: c1, turn: "r{{i}}", prompt: again}}
  - expect_turn: {{conv: c1, turn: t1, runtime_key: inventory@v1}}
  - expect_turn: {{conv: c1, turn: t2, runtime_key: planner@v1}}    # bound when it started
  - expect_conversation: {{conv: c1, current_runtime_key: inventory@v1}}
"""


def scenario_template(name: str, *, file: str, schema: str | None = None) -> str:
    """The commented scenario named ``name`` (checked against :data:`NAME` by the caller);
    ``file`` is how the comment names it, ``schema`` the path or URL of the JSON Schema
    an editor should check it with (a ``yaml-language-server`` modeline), if known."""
    modeline = f"# yaml-language-server: $schema={schema}\n" if schema else ""
    return _TEMPLATE.format(modeline=modeline, name=name, file=file)
