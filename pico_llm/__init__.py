"""Pico LLM: train, compare and run small language models on limited hardware.

The public API is imported lazily so `import pico_llm` stays light (no torch until you use it):

    from pico_llm import build_model, load_corpus, Trainer, TrainConfig, load_run, from_pretrained, generate
"""

from importlib import import_module

_EXPORTS = {
    "build_model": "pico_llm.models.registry",
    "register_model": "pico_llm.models.registry",
    "model_names": "pico_llm.models.registry",
    "LanguageModel": "pico_llm.models.base",
    "BaseConfig": "pico_llm.models.base",
    "TrainConfig": "pico_llm.config",
    "load_corpus": "pico_llm.data.cache",
    "Corpus": "pico_llm.data.cache",
    "train_tokenizer": "pico_llm.data.tokenizers",
    "Trainer": "pico_llm.training.trainer",
    "Callback": "pico_llm.training.trainer",
    "RunFolder": "pico_llm.training.run",
    "start_training": "pico_llm.training.launch",
    "resume_training": "pico_llm.training.launch",
    "load_run": "pico_llm.inference.loading",
    "from_pretrained": "pico_llm.inference.loading",
    "export": "pico_llm.export",
    "evaluate": "pico_llm.training.metrics",
    "generate": "pico_llm.inference.generation",
    "PicoError": "pico_llm.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pico_llm' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
