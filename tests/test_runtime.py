"""The runtime on this CPU: dtype choice from what torch reports, and every encoder training in every dtype.

These tests depend on the CPU, so `make test` runs them twice: as they are, and again as an
AVX2-only CPU would (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2: no AVX-512, no native
bfloat16 in oneDNN), whatever CPU CI lands on.
"""

import json
import warnings

import pytest
import torch

from pico_llm.cli import main
from pico_llm.errors import PicoWarning
from pico_llm.models import model_class, model_names
from pico_llm.training import runtime
from pico_llm.training.runtime import cpu_capability, cpu_has_bf16, pick_dtype

pytestmark = pytest.mark.cpu_sensitive
CPU = torch.device("cpu")


def test_native_bfloat16_needs_what_torch_reports():
    """An AVX2 capability (real, or forced by ATEN_CPU_CAPABILITY) means no native bfloat16, whatever cpuinfo says."""
    if cpu_capability() != "AVX512":
        assert not cpu_has_bf16()
    assert pick_dtype("auto", CPU) == (torch.bfloat16 if cpu_has_bf16() else torch.float32)


def test_emulated_bfloat16_is_allowed_with_one_warning(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    with pytest.warns(PicoWarning, match="has no native bfloat16: it is emulated and much slower than float32"):
        assert pick_dtype("bfloat16", CPU) == torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pick_dtype("auto", CPU) == torch.float32


@pytest.mark.parametrize("dtype", ["bfloat16", "auto"])
@pytest.mark.parametrize("name", model_names())
def test_every_encoder_trains_through_the_cli(name, dtype, text_file, tmp_path, capsys):
    """What a user runs (`pico-llm train --model lstm --dtype bfloat16` failed on AVX2-only CPUs)."""
    fields = [f"--{k.replace('_', '-')}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
              for k, v in model_class(name).debug.items()]
    out = tmp_path / "run"
    assert main(["train", "--model", name, "--data", str(text_file), "--context", "24", "--batch-size", "4",
                 "--max-steps", "3", "--eval-every", "2", "--eval-tokens", "128", "--sample-tokens", "4",
                 "--dtype", dtype, "--out", str(out), *fields]) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["val_loss"] < 10
    expected = {"bfloat16": "bfloat16", "auto": None}[dtype]
    assert expected is None or summary["dtype"] == expected


def test_bench_train_lstm_in_bfloat16(capsys):
    assert main(["bench", "train", "--model", "lstm", "--embed-dim", "16", "--hidden", "32", "--context", "16",
                 "--batch-size", "4", "--steps", "2", "--dtype", "bfloat16"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dtype"] == "bfloat16" and result["tokens_per_second"] > 0
