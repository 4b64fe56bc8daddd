"""`python -m pico_llm ...` is the same as `pico-llm ...`."""

from .cli import entry_point

entry_point()
