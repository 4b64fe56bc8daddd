"""The `pico-llm` command line: argparse in front, the package's pieces behind it.

`pico-llm [train] [flags]` trains (the subcommand may be omitted, as in the seed's
`python pico-llm.py --model kgram_cnn ...`), `generate` and `eval` use a run folder, `models` lists
the registered encoders. Any field of the chosen model's config is a flag too: `--n-layers 4`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import signal
import sys
import time
import typing
import warnings
from pathlib import Path

from .errors import PicoError, PicoWarning
from .training.allocator import keep_freed_memory

if typing.TYPE_CHECKING:
    from .training.run import RunFolder
    from .training.trainer import Trainer

SUBCOMMANDS = ("train", "generate", "eval", "export", "serve", "compare", "models", "bench")

TRAIN_HELP = {
    "model": "encoder name (see `pico-llm models`)",
    "data": "a text file, a folder of .txt files, a glob, a named corpus (tinyshakespeare, names) or hf:NAME[:config][:split]",
    "val_data": "separate validation text, named as --data is (default: the last 10%% of --data)",
    "text_field": "the field of an hf: dataset that holds the text (default text)",
    "tokenize_workers": "processes that tokenize a corpus the first time (default: one per CPU)",
    "grad_accum": "micro-batches per optimizer step (global batch = batch size x grad accum x processes)",
    "tokenizer": "byte (default, no training), char, or bpe (trained locally)",
    "vocab_size": "BPE vocabulary size",
    "epochs": "passes worth of training tokens (default 1, or unbounded with --time-budget; --max-steps wins)",
    "time_budget": "stop after this many seconds of wall time (evals included), then run the final eval",
    "plugins": "comma-separated Python files that register extra encoders",
    "out": "run folder (default experiments/results/<timestamp>-<model>)",
    "device": "auto, cpu, cuda or mps",
    "compile": "torch.compile the model (off by default: no speed-up measured on CPU; falls back with a warning)",
    "tensorboard": "also log the scalars as TensorBoard events in this folder (pip install 'pico-llm[tensorboard]')",
    "dtype": "autocast dtype: auto (on a bf16 CPU: whichever of float32/bfloat16 is measured faster for this model), float32, bfloat16, float16",
}


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one PicoError line instead of usage text."""

    def error(self, message: str):
        raise PicoError(f"{message}; see `{self.prog} --help`")


FIELD_NAME = re.compile(r"`([a-z][a-z0-9_]*)`")


def as_flags(message: str) -> str:
    """A library message in config-field words (`max_new_tokens`) in the CLI's (--max-new-tokens)."""
    return FIELD_NAME.sub(lambda m: "--" + m.group(1).replace("_", "-"), message)


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _converter(annotation):
    """A str -> value function for a dataclass field's type (int, float, bool, str, tuples, optionals)."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is tuple:
        item = _converter(args[0])
        return lambda text: tuple(item(part) for part in text.split(",") if part)
    if origin is not None and len(args) == 1:  # Optional[X]
        return _converter(args[0])
    return {bool: _parse_bool}.get(annotation, annotation)


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    from .config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        switch = {"nargs": "?", "const": True} if hints[field.name] is bool else {}  # `--compile` alone means true
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=_converter(hints[field.name]),
            default=None,
            help=TRAIN_HELP.get(field.name, f"default {field.default}"),
            **switch,
        )
    parser.add_argument("--context", type=int, default=None, help="tokens of context (a field of every model's config)")
    parser.add_argument("--config", default=None, help="JSON config file (default experiments/config.json)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its checkpoint.pt")
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    parser.add_argument("--allow-data-change", action="store_true", help="resume even though --data changed since")


def _model_flags(model_name: str, extra: list[str]) -> dict:
    """Parse `--field-name VALUE` pairs left over by argparse as fields of the model's config."""
    from .models.registry import model_class

    config_cls = model_class(model_name).Config
    hints = typing.get_type_hints(config_cls)
    names = {f.name for f in dataclasses.fields(config_cls)}
    fields: dict = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--"):
            raise PicoError(f"unexpected argument {token!r}; see `pico-llm train --help`")
        name, _, value = token[2:].partition("=")
        name = name.replace("-", "_")
        if not value:
            if i + 1 >= len(extra):
                raise PicoError(f"--{name.replace('_', '-')} needs a value")
            value = extra[i + 1]
            i += 1
        if name not in names or name == "vocab_size":
            known = sorted(f.name.replace("_", "-") for f in dataclasses.fields(config_cls) if f.name != "vocab_size")
            raise PicoError(f"unknown flag --{name.replace('_', '-')} for model {model_name!r}; its fields are --{', --'.join(known)}")
        try:
            fields[name] = _converter(hints[name])(value)
        except ValueError as err:
            raise PicoError(f"bad value for --{name.replace('_', '-')}: {err}") from None
        i += 1
    return fields


CLI_ONLY = ("config", "resume", "overwrite", "allow_data_change", "context")


def cmd_train(argv: list[str]) -> int:
    from .config import read_config_file, resolve
    from .models.registry import load_plugins
    from .training.distributed import leave
    from .training.launch import resume_training, start_training
    from .training.signals import Interrupted, StopSignals

    parser = Parser(prog="pico-llm train", description="Train a model; writes a run folder.")
    _add_train_flags(parser)
    args, extra = parser.parse_known_args(argv)
    flags = {k: v for k, v in vars(args).items() if k not in CLI_ONLY}
    with StopSignals() as signals:
        folder = None
        try:
            if args.resume:
                if extra or args.context is not None:
                    raise PicoError("model fields cannot change when resuming; drop " + " ".join(extra[::2] or ["--context"]))
                trainer, folder = resume_training(args.resume, flags, signals=signals, allow_data_change=args.allow_data_change)
            else:
                file_config = read_config_file(args.config)
                load_plugins(flags["plugins"] or file_config.get("train", {}).get("plugins", ()))
                model_name = flags["model"] or file_config.get("train", {}).get("model") or "kgram_cnn"
                model_flags = _model_flags(model_name, extra)
                if args.context is not None:
                    model_flags["context"] = args.context
                config, model_fields = resolve(file_config, flags, model_flags)
                trainer, folder = start_training(config, model_fields, signals=signals, overwrite=args.overwrite)
            with signals.deferred():  # from here a first signal is handled by the trainer, between steps
                return _fit_and_report(trainer, folder, signals)
        except Interrupted as stop:
            print(_stop_report(stop.signum, folder.path if folder else args.resume), flush=True)
            return stop.exit_code
        finally:
            leave()


def _stop_report(signum: int, run_dir, step: int | None = None) -> str:
    """What a stopped run says: where to continue from, or that there is nothing to continue."""
    name = signal.Signals(signum).name
    if run_dir is not None and Path(run_dir, "checkpoint.pt").is_file():
        at = f" at step {step}" if step is not None else ""
        return f"stopped by {name}{at}; the checkpoint is saved. Continue with: pico-llm train --resume {run_dir}"
    return f"stopped by {name} before the first step: nothing was trained yet"


def _fit_and_report(trainer: Trainer, folder: RunFolder | None, signals) -> int:
    """Train; rank 0 reports, the other processes of a torchrun job (they have no run folder) stay quiet."""
    if folder is None:
        trainer.fit()
        return 128 + (signals.signum or signal.SIGINT) if trainer.interrupted else 0
    print(f"run folder: {folder.path}  ({trainer.model.num_params():,} params, {trainer.device.type}, {trainer.runtime.dtype_name})",
          flush=True)
    try:
        summary = trainer.fit()
    finally:
        if not (folder.path / "checkpoint.pt").exists():
            folder.discard()  # a fresh run that saved nothing: leave no folder that blocks a retry
    if trainer.interrupted:
        signum = signals.signum or signal.SIGINT
        if trainer.session_steps:
            folder.plot()
        print(_stop_report(signum, folder.path, trainer.step if trainer.session_steps else None), flush=True)
        return 128 + signum
    print(
        f"done: {summary['steps']} steps, val loss {summary['val_loss']:.4f}, "
        f"val bits/byte {summary['val_bits_per_byte']:.4f}, {summary['train_tokens_per_second']:.0f} tokens/s"
    )
    sample = (folder.path / "samples.txt").read_text().rsplit("===\n", 1)[-1].strip()
    print(f"sample:\n{sample}\nrun folder: {folder.path}")
    return 0


def _add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", default="", help="text to continue (empty: start from a newline)")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 is greedy")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass, in (0, 1]")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeats")
    parser.add_argument("--seed", type=int, default=None, help="makes the output reproducible")
    parser.add_argument("--stop", action="append", default=[], help="stop a sample at this string (repeatable)")
    parser.add_argument("--num-samples", type=int, default=1, help="samples decoded together as one batch")
    parser.add_argument("--quantize", default="none", help="none, or int8 (weight-only, ~2x faster, slightly different logits)")


def cmd_generate(argv: list[str]) -> int:
    from .inference.generation import Sampling, encode_prompt, generate, stream
    from .inference.layout import column_major
    from .inference.loading import load_run
    from .inference.quantize import quantize

    parser = Parser(prog="pico-llm generate", description="Generate text from a trained run, streaming.")
    parser.add_argument("run_dir")
    parser.add_argument("--device", default="auto")
    _add_sampling_flags(parser)
    args = parser.parse_args(argv)
    sampling = {k: getattr(args, k) for k in ("temperature", "top_k", "top_p", "repetition_penalty", "seed")}
    Sampling(**sampling)  # check the values before anything prints
    run = load_run(args.run_dir, device=args.device)
    encode_prompt(run.tokenizer, args.prompt)
    column_major(quantize(run.model, args.quantize))
    options = {**sampling, "stop": args.stop}
    stats = {"tokens": 0}
    started = time.perf_counter()
    if args.num_samples == 1:
        print(args.prompt, end="", flush=True)
        for piece in stream(run, args.prompt, args.max_new_tokens, stats=stats, **options):
            print(piece, end="", flush=True)
        print()
    else:
        texts = generate(run, args.prompt, args.max_new_tokens, num_samples=args.num_samples, stats=stats, **options)
        for index, text in enumerate(texts, 1):
            print(f"--- sample {index} ---\n{args.prompt}{text}")
    seconds = time.perf_counter() - started
    print(f"[{stats['tokens']} tokens in {seconds:.2f}s: {stats['tokens'] / max(seconds, 1e-9):.1f} tokens/s]", file=sys.stderr)
    return 0


def cmd_eval(argv: list[str]) -> int:
    from .data.cache import load_tokens
    from .inference.loading import load_run
    from .training.metrics import evaluate
    from .training.runtime import autocast_for, pick_dtype

    parser = Parser(prog="pico-llm eval", description="Evaluate a run's model on a text; prints JSON.")
    parser.add_argument("run_dir")
    parser.add_argument("--data", required=True, help="text to evaluate on, named as `train --data` names it")
    parser.add_argument("--text-field", default="text", help="the field of an hf: dataset that holds the text")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None, help="autocast dtype (default: the one the run trained in)")
    args = parser.parse_args(argv)
    if args.batch_size <= 0:
        raise PicoError(f"`batch_size` must be positive, got {args.batch_size}")
    run = load_run(args.run_dir, device=args.device)
    tokens = load_tokens(args.data, run.tokenizer, args.text_field)
    if len(tokens) <= 1:
        raise PicoError(f"{args.data} has too few tokens to evaluate; give it more text")
    device = next(run.model.parameters()).device
    autocast = autocast_for(device, pick_dtype(args.dtype or run.runtime.get("dtype", "auto"), device))
    metrics = evaluate(run.model, tokens, run.tokenizer.token_byte_lengths(), min(run.model.config.context, len(tokens) - 1),
                       args.batch_size, device, autocast=autocast)
    print(json.dumps(metrics))
    return 0


def cmd_export(argv: list[str]) -> int:
    from .export import DTYPES, FORMATS, QUANTIZE, export

    parser = Parser(prog="pico-llm export", description="Ship a run's best weights: a pretrained folder (safetensors), "
                    "a Hugging Face transformers folder (hf) or a llama.cpp file (gguf).")
    parser.add_argument("run_dir", help="a run folder (or a pretrained folder)")
    parser.add_argument("--format", required=True, help=" | ".join(FORMATS))
    parser.add_argument("--out", required=True, help="the folder to write (new or empty)")
    parser.add_argument("--dtype", default="float32", help=" | ".join(DTYPES))
    parser.add_argument("--quantize", default="none", help=f"{' | '.join(QUANTIZE)} (int8: safetensors, or q8_0 in gguf)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    note = export(args.run_dir, args.format, args.out, args.dtype, args.quantize, args.overwrite)
    seconds = time.perf_counter() - started
    for path in sorted(Path(args.out).iterdir()):
        if path.is_file() and not path.name.startswith("."):
            print(f"{path}  {path.stat().st_size / 1e6:.2f} MB")
    if note:
        print(f"note: {as_flags(note)}")
    print(f"exported {args.run_dir} as {args.format} in {seconds:.1f}s")
    return 0


def cmd_serve(argv: list[str]) -> int:
    parser = Parser(prog="pico-llm serve", description="Serve run folders, pretrained folders or folders of runs: an "
                    "OpenAI-compatible API (/v1), a playground (/) and a runs dashboard (/runs).")
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--max-batch", type=int, default=32, help="requests a model decodes together")
    parser.add_argument("--max-queue", type=int, default=64, help="requests that may wait for a free row (then 429)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.max_batch < 1 or args.max_queue < 0 or not 0 <= args.port <= 65535:
        raise PicoError("--max-batch must be ≥ 1, --max-queue ≥ 0 and --port in 0..65535")
    try:
        import uvicorn

        from .serve.app import create_app
    except ImportError as err:
        raise PicoError(f"serving needs {err.name}: pip install 'pico-llm[serve]'") from None
    app = create_app(args.paths, args.max_batch, args.max_queue, args.device)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            port = self.servers[0].sockets[0].getsockname()[1] if self.servers else args.port
            print(f"serving {len(app.state.catalog.folders)} model(s) on http://{args.host}:{port}  "
                  "(playground /, runs /runs, API /v1)", flush=True)

    Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")).run()
    return 0


def cmd_compare(argv: list[str]) -> int:
    from .inference.runs import curve, find_runs, markdown_table, summary

    parser = Parser(prog="pico-llm compare", description="The runs as a markdown table, and their val curves overlaid.")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or folders of runs)")
    parser.add_argument("--out", default=None, help="write the overlaid curves to this PNG")
    args = parser.parse_args(argv)
    found = find_runs(args.runs)
    print(markdown_table([summary(run_id, folder) for run_id, folder in found.items()]), end="")
    if args.out:
        from .training.plots import plot_comparison

        plot_comparison({run_id: curve(folder) for run_id, folder in found.items()}, args.out)
        print(f"curves: {args.out}")
    return 0


def cmd_models(argv: list[str]) -> int:
    from .models.registry import build_model, load_plugins, model_class, model_names

    parser = Parser(prog="pico-llm models", description="List the registered encoders.")
    parser.add_argument("--plugins", default="", help="comma-separated encoder files to register first")
    load_plugins(p for p in parser.parse_args(argv).plugins.split(",") if p)
    for name in model_names():
        params = build_model(name).num_params()
        print(f"{name:<14} {params:>10,} params  {model_class(name).description}")
    return 0


def _bench_model(args: argparse.Namespace, extra: list[str]):
    """The model a bench times: a trained run's, or a fresh one (untrained weights) of the given shape."""
    import torch

    from .inference.loading import load_run
    from .models.registry import build_model
    from .training.runtime import pick_device

    if args.run:
        if extra:
            raise PicoError("model fields cannot be given with --run; the run fixes the model")
        return load_run(args.run, device=args.device).model
    torch.manual_seed(0)
    fields = _model_flags(args.model, extra)
    model = build_model(args.model, **fields, vocab_size=args.vocab_size, context=args.context)
    return model.to(pick_device(args.device))


def cmd_bench_suite(argv: list[str]) -> int:
    from .bench.suite import SUITES, run_suite
    from .data.cache import read_corpus
    from .models.registry import model_names

    parser = Parser(prog="pico-llm bench", description="Train every encoder at a matched size and budget (quick, "
                    "standard), or every option on and off over seeds (ablation); "
                    "`pico-llm bench generate|train --help` for single-model timings.")
    parser.add_argument("--suite", choices=[*sorted(SUITES), "ablation"], default="quick")
    parser.add_argument("--data", default="data/sample_text.txt")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds of training per model (ablation: 120)")
    parser.add_argument("--params", type=int, default=None, help="parameter budget per model (default 1M)")
    parser.add_argument("--models", default=None, help="comma-separated subset (default: every registered encoder)")
    parser.add_argument("--arms", default=None, help="ablation: comma-separated arms (transformer:adamw), models, or "
                        "arms written out (kgram_cnn:dropout=0.1+optimizer=muon)")
    parser.add_argument("--seeds", type=int, default=3, help="ablation: runs per arm (default 3)")
    parser.add_argument("--dtype", default="auto", help="ablation: the autocast dtype of every run (auto measures "
                        "per run on a CPU with bfloat16, so a fixed one compares arms at equal speed)")
    parser.add_argument("--out", default=None, help="folder for results.json, results.md and plots")
    args = parser.parse_args(argv)
    if args.suite == "ablation":
        return _bench_ablation(args)
    suite = SUITES[args.suite]
    overrides = {k: v for k, v in (("time_budget", args.time_budget), ("params", args.params)) if v is not None}
    if any(v <= 0 for v in overrides.values()):
        raise PicoError("--time-budget and --params must be positive")
    suite = dataclasses.replace(suite, **overrides)
    models = args.models.split(",") if args.models else model_names()
    unknown = sorted(set(models) - set(model_names()))
    if unknown:
        raise PicoError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(model_names())}")
    read_corpus(args.data)  # fail fast, before any model trains
    out = args.out or f"experiments/results/bench-{args.suite}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_suite(suite, args.data, models, out)
    print(Path(out, "results.md").read_text())
    print(f"results: {out}")
    return 0


def _bench_ablation(args: argparse.Namespace) -> int:
    from .bench.ablation import run_ablation, select_arms
    from .data.cache import read_corpus

    budget = args.time_budget or 120.0
    if budget <= 0 or args.seeds < 1:
        raise PicoError("--time-budget and --seeds must be positive")
    arms = select_arms(args.arms)
    read_corpus(args.data)  # fail fast, before any arm trains
    out = args.out or f"experiments/results/bench-ablation-{budget:.0f}s-{time.strftime('%Y%m%d-%H%M%S')}"
    run_ablation(arms, args.data, budget, args.seeds, out, dtype=args.dtype)
    print(Path(out, "results.md").read_text())
    print(f"results: {out}")
    return 0


def cmd_bench_serve(argv: list[str]) -> int:
    from .bench.serving import bench_serve

    parser = Parser(prog="pico-llm bench serve", description="Serve a run and time concurrent streamed completions; "
                    "prints JSON: aggregate tokens/s concurrent and one after another, time to first token.")
    parser.add_argument("run_dir")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--tokens", type=int, default=200, help="tokens a completion")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",") if c]
    if not clients or min(clients) < 1 or args.tokens < 1:
        raise PicoError("--clients must be positive numbers and --tokens positive")
    for row in bench_serve(args.run_dir, clients, args.tokens):
        print(json.dumps(row))
    return 0


def cmd_bench(argv: list[str]) -> int:
    if argv and argv[0] == "serve":
        return cmd_bench_serve(argv[1:])
    if not argv or argv[0] not in ("generate", "train"):
        return cmd_bench_suite(argv)
    from .bench.generation import bench_generate
    from .bench.training import bench_train
    from .config import TrainConfig
    from .inference.layout import column_major
    from .inference.quantize import quantize

    parser = Parser(prog="pico-llm bench", description="Time generation or training; prints JSON.")
    parser.add_argument("what", choices=["generate", "train"])
    parser.add_argument("--model", default="kgram_cnn")
    parser.add_argument("--run", default=None, metavar="RUN_DIR", help="time a trained run's model instead")
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="generate: timed runs (median reported)")
    parser.add_argument("--quantize", default="none", help="generate: none or int8 weights")
    parser.add_argument("--batch-size", type=int, default=32, help="train: windows per step")
    parser.add_argument("--steps", type=int, default=20, help="train: timed steps (median reported)")
    parser.add_argument("--dtype", default="auto", help="train: autocast dtype")
    parser.add_argument("--device", default="auto")
    args, extra = parser.parse_known_args(argv)
    for name in ("context", "vocab_size", "prompt_tokens", "new_tokens", "repeats", "batch_size", "steps"):
        if getattr(args, name) <= 0:
            raise PicoError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    model = _bench_model(args, extra)
    if args.what == "generate":
        params = model.num_params()  # before quantization turns weights into buffers
        result = bench_generate(column_major(quantize(model, args.quantize)), args.prompt_tokens, args.new_tokens, args.repeats, bound=True)
        result.update(params=params, quantize=args.quantize)
    else:
        config = TrainConfig(model=model.name, batch_size=args.batch_size, device=args.device, dtype=args.dtype)
        result = bench_train(model, config, args.steps)
    print(json.dumps(result))
    return 0


COMMANDS = {"train": cmd_train, "generate": cmd_generate, "eval": cmd_eval, "export": cmd_export, "serve": cmd_serve,
            "compare": cmd_compare, "models": cmd_models, "bench": cmd_bench}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """PicoWarnings as one `warning:` line in flag words; other warnings as Python shows them."""
    if issubclass(category, PicoWarning):
        print(f"warning: {as_flags(str(message))}", file=sys.stderr, flush=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: pico-llm {{{','.join(SUBCOMMANDS)}}} [flags]   (train is the default; "
              "`pico-llm train --help` for its flags)")
        return 0
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "train"
    keep_freed_memory()
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return COMMANDS[command](argv)
    except PicoError as err:
        print(f"error: {as_flags(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown


def entry_point() -> None:
    sys.exit(main())
