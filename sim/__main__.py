"""``python -m sim`` is the ``turnsim`` command."""

from sim.cli import main

main()
