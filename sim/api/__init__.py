"""The debug HTTP API (``/api/debug/...``), one module per HTTP concept.

Layer 3. ``params`` decodes query parameters (400s), ``views`` renders conversations,
turns and items, ``openapi`` is the document, ``app`` the routes and ``create_app``,
``serve`` runs it on Hypercorn (asyncio or trio). ``client`` is the typed client; it
imports none of the server's modules (an import-linter contract holds it).
"""
