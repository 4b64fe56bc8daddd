"""`pico-llm export`: ship a trained model in the format the tool that reads it expects.

- safetensors: a pretrained folder (config.json, model.safetensors, tokenizer.json) of any model,
  optionally in bfloat16/float16 or with int8 weights; `pico_llm.from_pretrained` loads it.
- hf: a `transformers` folder (Llama or GPT-2), see hf.py.
- gguf: one GGUF file for llama.cpp (the Llama-compatible transformer), see gguf.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from ..errors import PicoError
from ..files import write_json, write_text
from ..inference.loading import Run, load_run
from ..inference.quantize import quantize as quantize_int8
from ..models.registry import model_spec
from ..weights import WEIGHTS_FILE, save_weights
from .architectures import SUPPORTED, architecture

FORMATS = ("safetensors", "hf", "gguf")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
QUANTIZE = ("none", "int8")
EXPORT_FILES = ("config.json", WEIGHTS_FILE, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "generation_config.json", "model.gguf")


def _check_options(format: str, dtype: str, quantize: str) -> None:
    for name, value, allowed in (("format", format, FORMATS), ("dtype", dtype, DTYPES), ("quantize", quantize, QUANTIZE)):
        if value not in allowed:
            raise PicoError(f"`{name}` must be one of {', '.join(allowed)}, got {value!r}")
    if quantize == "int8" and format == "hf":
        raise PicoError("`quantize` int8 is for the safetensors and gguf formats; `transformers` loads float weights")


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PicoError(f"`out` {out} is a file, not a folder; choose another `out`")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise PicoError(f"`out` {out} is not empty; choose an empty or new folder, or replace its export with `overwrite`")
        for name in EXPORT_FILES:  # only an export's own files: `out` may hold other things
            (out / name).unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PicoError(f"cannot create {out} ({err.strerror}); choose another `out`") from None


def write_pretrained(run: Run, out: Path, dtype: str, quantize: str) -> None:
    """A pretrained folder: the model's spec, its weights (cast or int8) and its tokenizer."""
    model = quantize_int8(copy.deepcopy(run.model), "int8") if quantize == "int8" else run.model
    metadata = {"format": "pt", "dtype": dtype, "quantize": quantize}
    save_weights(model, out / WEIGHTS_FILE, metadata, None if quantize == "int8" else DTYPES[dtype])
    plugins = run.config.get("plugins") or run.config.get("train", {}).get("plugins", [])
    write_json(out / "config.json", {"model": model_spec(run.model), "plugins": list(plugins)})
    write_text(out / "tokenizer.json", json.dumps(run.tokenizer.state(), indent=1))


def export(run_dir: str | Path, format: str, out: str | Path, dtype: str = "float32", quantize: str = "none",
           overwrite: bool = False) -> str | None:
    """Export a run's (or a pretrained folder's) best weights to `out`; returns a note for the user, if any."""
    _check_options(format, dtype, quantize)
    out = Path(out)
    run = load_run(run_dir, device="cpu")
    if format != "safetensors" and architecture(run.model) is None:
        raise PicoError(f"`format` {format} supports {SUPPORTED}; this run's model is {run.model.name} "
                        f"({', '.join(f'{k} {v}' for k, v in model_spec(run.model).items() if k != 'name')}); "
                        "`format` safetensors ships any model as a pretrained folder")
    if format == "gguf" and architecture(run.model) != "llama":
        raise PicoError("`format` gguf writes the Llama-compatible transformer (rmsnorm, swiglu, rotary); "
                        "export this GPT-2-like one with `format` hf, or any model with `format` safetensors")
    _prepare_out(out, overwrite)
    if format == "safetensors":
        write_pretrained(run, out, dtype, quantize)
        return None
    if format == "hf":
        from .hf import write_hf

        write_hf(run.model, run.tokenizer, out, DTYPES[dtype])
        return None
    try:
        from .gguf import write_gguf
    except ImportError:
        raise PicoError("GGUF export needs the 'gguf' package: pip install 'pico-llm[export]'") from None
    return write_gguf(run.model, run.tokenizer, out / "model.gguf", "int8" if quantize == "int8" else dtype)
