"""The version corral reports: the Ollama API level it implements (clients gate features on it)."""

OLLAMA_API_VERSION = "0.13.0"
