"""Pull and push between the local model store and a registry speaking Ollama's /v2 protocol."""
