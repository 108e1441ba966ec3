"""One module per group of ``corral`` commands; each handler takes (client, args) and returns an exit code."""
