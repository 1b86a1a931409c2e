"""`nnspec import`: a cold import of torchvision's ResNet-50 and of Hugging Face's GPT-2
small, and LLaMA-2-7B from its config and a 6.7 B-parameter decoder of nn modules, imported
without their weights in memory.

Usage: python bench/bench_import.py [--reps 3]

Cold: a fresh interpreter runs `nnspec import torchvision.models:resnet50 -o FILE`
(torch, torchvision and the trace included; torchvision's op schemas declared first, as
the tests do, where its C++ ops do not load), median of --reps. Goal: <= 10 s.

Meta: a LLaMA-7B-shaped decoder written here (32 layers, d = 4096, 32 heads, a gated MLP
of 11008 as LLaMA's; 6.7 B parameters, 27 GB in float32) imported in a fresh interpreter;
its peak RSS (ru_maxrss) against a bare `import torch`. The model is built on the meta
device, so the import holds no weights. Goal: peak <= 1 GB.

Hugging Face (skipped without transformers): `nnspec import hf:config.json` of GPT-2 small
(GPT2LMHeadModel, transformers' default config) cold, and of LLaMA-2-7B's config
(LlamaForCausalLM: 32 layers, d 4096, 11008, vocab 32000) with its peak RSS; both traced with
torch.export on the meta device.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, fmt_s, machine, med, result, run_timed

SHIM = f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import conftest; "

DECODER = '''
import torch
from torch import nn


class Layer(nn.Module):
    def __init__(self, d=4096, heads=32, hidden=11008):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, bias=False, batch_first=True)
        self.ln_2 = nn.LayerNorm(d)
        self.gate = nn.Linear(d, hidden, bias=False)
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        h = self.ln_2(x)
        return x + self.down(nn.functional.silu(self.gate(h)) * self.up(h))


class Decoder(nn.Module):
    def __init__(self, vocab=32000, d=4096, layers=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList([Layer(d) for _ in range(layers)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x))
'''

PEAK = ("import resource, sys; {run}"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def _peak(code: str, cwd: str) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK.format(run=code)], cwd=cwd, check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[-1]) * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    print(f"# bench_import  ({machine()})")
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "resnet50.nn")
        cmd = [sys.executable, "-c", SHIM + "from nnspec.tools.cli import main; "
               f"raise SystemExit(main(['import', 'torchvision.models:resnet50', '-o', "
               f"{out!r}, '-q']))"]
        times = [run_timed(cmd, None, tmp) for _ in range(args.reps)]
        t = med(times)
        print(f"cold nnspec import torchvision.models:resnet50: {fmt_s(t)} "
              f"(median of {args.reps}; {Path(out).stat().st_size:,} bytes written)")
        result("import_resnet50_cold", fmt_s(t), "<= 10 s", t <= 10.0)

        (Path(tmp) / "bench_decoder.py").write_text(DECODER)
        spec = str(Path(tmp) / "decoder.nn")
        bare = _peak("import torch; ", tmp)
        peak = _peak("sys.path.insert(0, ''); from nnspec.tools.cli import main; "
                     f"main(['import', 'bench_decoder:Decoder', '-o', {spec!r}, '-q']); ",
                     tmp)
        import nnspec

        params = nnspec.load(spec).param_count()
        print(f"import of a {params / 1e9:.2f} B-parameter decoder on meta: peak RSS "
              f"{peak / 2**20:,.0f} MiB (bare `import torch`: {bare / 2**20:,.0f} MiB)")
        result("import_7b_meta_peak", f"{peak / 2**20:,.0f} MiB", "<= 1 GB",
               peak <= 2**30)
        _hugging_face(tmp, args.reps)


LLAMA2_7B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
             "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096,
             "rms_norm_eps": 1e-5}
GPT2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}


def _hugging_face(tmp: str, reps: int) -> None:
    import json

    try:
        import transformers  # noqa: F401
    except ImportError:
        print("transformers is not installed: the Hugging Face imports are skipped")
        return
    import nnspec

    for name, config in (("gpt2", GPT2), ("llama2_7b", LLAMA2_7B)):
        cfg = Path(tmp) / f"{name}.json"
        cfg.write_text(json.dumps(config))
        out = str(Path(tmp) / f"{name}.nn")
        argv = ["import", f"hf:{cfg}", "--input", "input_ids: [N, T] int", "-o", out, "-q"]
        if name == "gpt2":
            cmd = [sys.executable, "-c", SHIM + "from nnspec.tools.cli import main; "
                   f"raise SystemExit(main({argv!r}))"]
            t = med([run_timed(cmd, None, tmp) for _ in range(reps)])
            print(f"cold nnspec import hf:gpt2 (GPT2LMHeadModel): {fmt_s(t)} (median of "
                  f"{reps}; {nnspec.load(out).param_count():,} parameters)")
            result("import_hf_gpt2_cold", fmt_s(t), "<= 10 s", t <= 10.0)
            continue
        peak = _peak(SHIM + f"from nnspec.tools.cli import main; main({argv!r}); ", tmp)
        params = nnspec.load(out).param_count()
        print(f"import of LLaMA-2-7B from its config ({params:,} parameters) on meta: peak "
              f"RSS {peak / 2**20:,.0f} MiB")
        result("import_hf_llama2_7b_peak", f"{peak / 2**20:,.0f} MiB", "<= 1 GB",
               peak <= 2**30)


if __name__ == "__main__":
    main()
