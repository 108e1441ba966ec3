"""The auth service's tables (prefixed ``auth_`` so they can share a database with other services)."""
