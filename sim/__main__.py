"""``python -m sim`` is the ``turnsim`` command."""

from sim.cli.main import main

main()
