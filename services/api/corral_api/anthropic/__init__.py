"""The Anthropic Messages API (/v1/messages) translated around the native chat handler."""
