"""Finding runs and telling them apart: what `serve` offers as models and what `compare` and the /runs
page tabulate and draw."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import PicoError
from .loading import read_run_config


def find_runs(paths: list[str | Path]) -> dict[str, Path]:
    """{id: folder} for every run or pretrained folder given or found below the folders given.

    A folder with a config.json is one model; any other folder is searched for them (a folder of
    runs such as experiments/results). The id is the folder's name, or its path below the folder
    given where two share a name.
    """
    found: list[tuple[Path, Path]] = []
    for path in map(Path, paths):
        if (path / "config.json").is_file():
            found.append((path.parent, path))
        elif path.is_dir():
            found.extend((path, config.parent) for config in sorted(path.rglob("config.json")) if _is_run(config.parent))
        else:
            raise PicoError(f"{path} is not a run folder, a pretrained folder or a folder of runs")
    names = [folder.name for _, folder in found]
    runs = {}
    for root, folder in found:
        name = folder.name if names.count(folder.name) == 1 else folder.relative_to(root).as_posix()
        runs[name if name != "." else folder.resolve().name] = folder
    if not runs:
        raise PicoError(f"no run folders in {', '.join(map(str, paths))}; pass folders written by `pico-llm train` or `export`")
    return runs


def _is_run(folder: Path) -> bool:
    try:
        read_run_config(folder)
    except PicoError:
        return False
    return True


def records(folder: Path) -> list[dict]:
    """The metrics log (a line torn by a killed writer is skipped); [] for a pretrained folder."""
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    result = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            result.append(record)
    return result


def curve(folder: Path) -> list[dict]:
    """Val bits per byte at each eval: [{step, wall_seconds, val_bits_per_byte}]."""
    return [{key: r.get(key) for key in ("step", "wall_seconds", "val_bits_per_byte")}
            for r in records(folder) if r.get("val_bits_per_byte") is not None]


def summary(run_id: str, folder: Path) -> dict:
    """One row of the runs table: what a run is and how it did (None where a folder does not say)."""
    config = read_run_config(folder)
    path = folder / "summary.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    last = (records(folder) or [{}])[-1]
    spec, train = config["model"], config.get("train", {})
    return {
        "id": run_id,
        "model": spec.get("name"),
        "params": done.get("params") or _params(spec),
        "tokenizer": train.get("tokenizer") or _tokenizer_name(folder),
        "context": spec.get("context"),
        "steps": done.get("steps", last.get("step")),
        "wall_seconds": done.get("wall_seconds", last.get("wall_seconds")),
        "train_tokens_per_second": done.get("train_tokens_per_second"),
        "val_bits_per_byte": done.get("val_bits_per_byte"),
        "best_val_loss": done.get("best_val_loss"),
        "finished": bool(done),
    }


def _params(spec: dict) -> int | None:
    """The parameter count of a model spec, built on the meta device (no memory); None for an unknown model."""
    import torch

    from ..models.registry import build_model

    try:
        with torch.device("meta"):
            return build_model(spec).num_params()
    except PicoError:
        return None


def _tokenizer_name(folder: Path) -> str | None:
    path = folder / "tokenizer.json"
    return json.loads(path.read_text()).get("name") if path.is_file() else None


def markdown_table(rows: list[dict]) -> str:
    """The runs table as markdown, best val bits per byte first."""
    columns = ["id", "model", "params", "tokenizer", "context", "steps", "wall_seconds", "train_tokens_per_second",
               "val_bits_per_byte", "best_val_loss"]
    rows = sorted(rows, key=lambda r: (r["val_bits_per_byte"] is None, r["val_bits_per_byte"] or 0))

    def cell(value) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:,.4f}" if value < 100 else f"{value:,.0f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
