"""Remote models: requests for a model that runs on another corral (the cloud) are forwarded to it.

``settings`` (which hosts, which identity), ``policy`` (may this host be reached, and with credentials),
``identity`` (signing with the signin key or OLLAMA_API_KEY), ``client`` (the typed upstream client),
``forward`` (the ASGI middleware that relays generate/chat/embed and every /v1 route), ``pull``
(``NAME:TAG-cloud`` records from the cloud's /api/show).
"""
