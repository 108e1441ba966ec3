"""corral auth: users, API keys, ed25519 signin, registry tokens and the audit log."""
