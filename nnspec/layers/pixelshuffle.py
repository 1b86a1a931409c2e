"""pixel_shuffle / pixel_unshuffle: the sub-pixel upsampler of super-resolution nets
(nn.PixelShuffle / nn.PixelUnshuffle) over [*, C, H, W]:

    pixel_shuffle r:    [N, C*r^2, H, W] -> [N, C, H*r, W*r]
    pixel_unshuffle r:  [N, C, H*r, W*r] -> [N, C*r^2, H, W]
"""

from __future__ import annotations

from ..core.dims import Dim
from .base import (
    Int,
    LayerKind,
    Params,
    ShapeError,
    TensorType,
    TorchModule,
    TorchPlan,
    need_float,
    npops,
    positive,
    register,
)


def _divide(d: Dim, k: int, what: str, label: str, code: str, hint: str) -> Dim:
    """d / k, exact for every value of d's symbols, or a ShapeError with the numbers."""
    q = d.floordiv(k)
    if q * k == d:
        return q
    if d.is_const:
        raise ShapeError(f"{what} must be a multiple of {label}, but {d.value} is not a "
                         f"multiple of {k} ({d.value} = {k}*{d.value // k} + {d.value % k})",
                         arg="r", code=code, hint=hint)
    raise ShapeError(f"{what} must be a multiple of {label} = {k} for every value of its "
                     f"symbols, but it is {d}", arg="r", code=code, hint=hint)


class _Shuffle(LayerKind):
    positional = ("r",)
    ranks = (3, None)
    layout = "[N, C, H, W]"

    class Params(Params):
        r: Int

        _pos = positive("r")

    def numpy(self, p, w, xs, ctx):
        from . import _interp

        fn = _interp.pixel_shuffle if self.up else _interp.pixel_unshuffle
        return fn(xs[0], p.r)

    def backward(self, p, w, xs, y, gy, ctx):
        from . import _interp

        fn = _interp.pixel_shuffle if self.up else _interp.pixel_unshuffle
        return [npops.gather_backward(lambda i: fn(i, p.r), xs[0].shape, gy)], {}

    def torch(self, p, ins, out):
        return TorchPlan(TorchModule("PixelShuffle" if self.up else "PixelUnshuffle", (p.r,)),
                         [])

    def sample(self):
        shape = (2, 8, 3, 2) if self.up else (2, 2, 4, 6)
        return {"r": 2}, [TensorType(shape)]


@register
class PixelShuffle(_Shuffle):
    """Moves r*r channels into an r-times larger image."""

    name = "pixel_shuffle"
    aliases = ("pixelshuffle",)
    synonyms = {"upscale_factor": "r"}
    up = True
    summary = "pixel_shuffle <r>: [N, C*r^2, H, W] -> [N, C, H*r, W*r]"

    def infer(self, p, ins):
        (x,) = ins
        need_float(x, self.name)
        r2 = p.r * p.r
        c = _divide(x.shape[-3], r2, f"{self.name}'s input channels", "r^2", "E387",
                    f"give it a multiple of {r2} channels (a conv with C*{r2} outputs "
                    "first)")
        return TensorType(x.shape[:-3] + (c, x.shape[-2] * p.r, x.shape[-1] * p.r))


@register
class PixelUnshuffle(_Shuffle):
    """Moves each r-by-r block of pixels into r*r channels."""

    name = "pixel_unshuffle"
    aliases = ("pixelunshuffle",)
    synonyms = {"downscale_factor": "r"}
    up = False
    summary = "pixel_unshuffle <r>: [N, C, H*r, W*r] -> [N, C*r^2, H, W]"

    def infer(self, p, ins):
        (x,) = ins
        need_float(x, self.name)
        hint = "crop or pad the input to a multiple of r first"
        h = _divide(x.shape[-2], p.r, f"{self.name}'s input height", "r", "E388", hint)
        w = _divide(x.shape[-1], p.r, f"{self.name}'s input width", "r", "E388", hint)
        return TensorType(x.shape[:-3] + (x.shape[-3] * (p.r * p.r), h, w))
