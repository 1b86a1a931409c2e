"""The emitted PyTorch modules on a GPU: one training step (forward, backward, optimizer)
under bfloat16 autocast and torch.compile, against the same network written by hand.

Usage: python bench/bench_gpu.py [--steps 20] [--no-compile]

  GPT-2 small (specs/gpt2.nn, batch 8 x 1024 tokens, dropout 0): the emitted module vs
      nanoGPT's GPT (tests/_nanogpt.py), both with flash attention
      (F.scaled_dot_product_attention, causal);
  ResNet-50 (the spec below, torchvision's layout): the emitted module vs
      torchvision.models.resnet50(), batch 64 at 224 x 224, channels_last, AMP.

Prints each step's median time and the ratio emitted / hand-written. Without CUDA it says
so and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from _common import ROOT, import_emitted

import nnspec

RESNET50 = """
block Bottleneck(x, c) {
    y = x | conv c k=1 bias=false as conv1 | batchnorm as bn1 | relu
          | conv c k=3 p=1 bias=false as conv2 | batchnorm as bn2 | relu
          | conv (4 * c) k=1 bias=false as conv3 | batchnorm as bn3
    return relu(y + x)
}
block Down(x, c, stride=2) {
    y = x | conv c k=1 bias=false as conv1 | batchnorm as bn1 | relu
          | conv c k=3 s=stride p=1 bias=false as conv2 | batchnorm as bn2 | relu
          | conv (4 * c) k=1 bias=false as conv3 | batchnorm as bn3
    r = x | conv (4 * c) k=1 s=stride bias=false as downsample_conv
          | batchnorm as downsample_bn
    return relu(y + r)
}
block Stage(x, c, n, stride=2) {
    Down(c, stride) | Bottleneck(c) * (n - 1)
}
model ResNet50(x: [N, 3, 224, 224]) -> [N, 1000] {
    conv 64 k=7 s=2 p=3 bias=false as conv1 | batchnorm as bn1 | relu
    maxpool k=3 s=2 p=1
    Stage(64, 3, stride=1) as layer1
    Stage(128, 4) as layer2
    Stage(256, 6) as layer3
    Stage(512, 3) as layer4
    avgpool global | flatten | dense 1000 as fc
}
"""


def _median_step(step, steps: int, sync) -> float:
    for _ in range(3):
        step()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _trainer(torch, model, make_batch, loss_fn, compile_: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    fwd = torch.compile(model) if compile_ else model
    x, y = make_batch()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(fwd(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device; nothing to time (run it on a machine with a GPU)")
        return 0
    sys.path.insert(0, str(ROOT / "tests"))
    from _nanogpt import NanoGPT

    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    sync = torch.cuda.synchronize
    compile_ = not args.no_compile
    print(f"bench_gpu: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"bf16 autocast, torch.compile {compile_}")
    with tempfile.TemporaryDirectory() as tmp:
        # GPT-2 small, dropout 0 (as nanoGPT's reference has none)
        spec = nnspec.load(str(ROOT / "specs/gpt2.nn"), consts={"p": 0.0})
        emitted = import_emitted(spec, tmp).to(dev)
        hand = NanoGPT(50257, 1024, 768, 12, 12).to(dev)
        n, t = 8, 1024

        def tokens():
            x = torch.randint(0, 50257, (n, t), device=dev)
            return x, torch.randint(0, 50257, (n, t), device=dev)

        def lm_loss(logits, y):
            return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        ratios = {}
        got = {k: _median_step(_trainer(torch, m, tokens, lm_loss, compile_), args.steps, sync)
               for k, m in (("emitted", emitted), ("nanoGPT", hand))}
        ratios["GPT-2"] = got["emitted"] / got["nanoGPT"]
        print(f"  [GPT-2 small, {n} x {t}] step: emitted {got['emitted'] * 1e3:.1f} ms, "
              f"nanoGPT {got['nanoGPT'] * 1e3:.1f} ms, ratio {ratios['GPT-2']:.3f}")
        del emitted, hand
        # ResNet-50, channels_last
        try:
            import torchvision
        except ImportError:
            torchvision = None
        if torchvision is None:
            print("  [ResNet-50] torchvision is not installed: skipped")
        else:
            spec = nnspec.loads(RESNET50, "resnet50.nn")
            emitted = import_emitted(spec, tmp).to(dev, memory_format=torch.channels_last)
            hand = torchvision.models.resnet50().to(dev, memory_format=torch.channels_last)
            b = 64

            def images():
                x = torch.randn(b, 3, 224, 224, device=dev)
                return x.to(memory_format=torch.channels_last), \
                    torch.randint(0, 1000, (b,), device=dev)
            got = {k: _median_step(_trainer(torch, m, images, F.cross_entropy, compile_),
                                   args.steps, sync)
                   for k, m in (("emitted", emitted), ("torchvision", hand))}
            ratios["ResNet-50"] = got["emitted"] / got["torchvision"]
            print(f"  [ResNet-50, batch {b}, channels_last] step: emitted "
                  f"{got['emitted'] * 1e3:.1f} ms, torchvision {got['torchvision'] * 1e3:.1f}"
                  f" ms, ratio {ratios['ResNet-50']:.3f}")
    print("  ratios emitted / hand-written: "
          + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
