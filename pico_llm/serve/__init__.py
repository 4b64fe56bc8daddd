"""`pico-llm serve`: an OpenAI-compatible server with a browser playground and a runs dashboard."""
