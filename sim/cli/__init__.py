"""The ``turnsim`` command line: click only, one module per command group.

Layer 4: nothing imports it. Each command is one library call plus output (``main``:
run, variants, invariants; ``explore``; ``logs``; ``serve``; ``db``); ``_common`` holds
the options every command shares, the one exit helper (``fail``) and the one JSON printer
(``emit_json``).
"""
