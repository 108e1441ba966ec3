"""OpenAI-compatible API: translate OpenAI bodies to native requests and native chunks back (§4 of the reference)."""
