"""The seed's entry point: `python pico-llm.py --model kgram_cnn --epochs 20 --lr 3e-4 --context 128`.

A thin shim over the package's CLI; every `pico-llm` subcommand works here too.
"""

from pico_llm.cli import entry_point

if __name__ == "__main__":
    entry_point()
