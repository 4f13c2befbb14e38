"""turnsim's logs: writing them (:mod:`~sim.logs.setup`, the one structlog configuration)
and reading them back (what ``turnsim logs`` shows).

Reading works on an iterator of events and keeps only what its view needs. ``render``
imports ``timeline`` and ``summary``; they, ``select`` and ``replay`` import only
``fields``; ``read`` stands alone. Only ``render`` and ``screen`` (the terminal's text)
import rich; only ``plot`` (pictures) imports matplotlib, and only when it draws.

* :mod:`~sim.logs.read`: the streaming reader (files, gzip, stdin), ``Malformed`` lines;
* :mod:`~sim.logs.fields`: typed reads of one field of an event;
* :mod:`~sim.logs.select`: the filter (``LogFilter``, ``Selector``);
* :mod:`~sim.logs.timeline`: the timeline model (runs, conversations, turns);
* :mod:`~sim.logs.summary`: the summary's counters;
* :mod:`~sim.logs.replay`: the store's rows, rebuilt from the events alone;
* :mod:`~sim.logs.render`: the text of the line view, the timeline and the summary;
* :mod:`~sim.logs.screen`: drawing styled lines (colours, wrapping, escaping);
* :mod:`~sim.logs.swimlane`: the picture of a run as values (lanes, bars, ticks, crosses);
* :mod:`~sim.logs.plot`: swimlanes drawn with matplotlib (``turnsim logs --plot``).
"""
