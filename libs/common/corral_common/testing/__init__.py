"""Test helpers that need no service, importable by every test folder.

``ggufwriter`` builds GGUF files, ``jobstore_contract`` is the contract every ``JobStore`` keeps,
``backends`` reaches the Postgres and S3 servers a test may run against, ``threads``
runs one call from several threads at once, ``projector`` makes a synthetic vision projector and test
images. Nothing in production imports this package.
"""
