"""Third-party code corral runs unchanged (see each file's header)."""
