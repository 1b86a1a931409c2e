"""Layer kinds: one module per family, each class one kind (see base.py).

A family's module is imported when one of its kinds is first looked up in ``REGISTRY``
(``nnspec check`` imports only the families its specs use). A new family is one more line in
``MODULES``; ``NAMES`` lists each module's kind names and aliases, and
tests/test_cold_start.py fails, printing the table to paste here, when it and the kinds the
modules register disagree (the kinds of a module missing from it are still found: a name it
does not know imports the modules it does not list).
"""

from .base import REGISTRY, LayerKind, ShapeError, TensorType  # noqa: F401

#: the modules of the layer kinds, one a line
MODULES = (
    "activation",
    "adaptive",
    "attention",
    "buffer",
    "capsule",
    "consts",
    "conv",
    "convtranspose",
    "dense",
    "dropout",
    "embedding",
    "gather",
    "groupnorm",
    "merge",
    "norm",
    "padcrop",
    "param",
    "pixelshuffle",
    "pool",
    "positional",
    "rbm",
    "recurrent",
    "reshape",
    "rope",
    "sdpa",
    "split",
    "stochastic",
    "tensorops",
    "upsample",
)

#: each module's kind names and aliases, in registration order
NAMES = {
    "activation": "relu leaky_relu elu gelu tanh sigmoid silu swish softmax log_softmax identity "
                  "relu6 ReLU6 hardtanh hard_tanh Hardtanh clamp clip hardsigmoid hard_sigmoid "
                  "Hardsigmoid hardswish hard_swish Hardswish softplus Softplus mish Mish prelu "
                  "PReLU",
    "adaptive": "adaptive_avgpool adaptiveavgpool adaptive_avg_pool adaptive_average_pool "
                "adaptive_avgpool1d adaptiveavgpool1d adaptive_avg_pool1d adaptive_average_pool1d "
                "adaptive_avgpool2d adaptiveavgpool2d adaptive_avg_pool2d adaptive_average_pool2d "
                "adaptive_avgpool3d adaptiveavgpool3d adaptive_avg_pool3d adaptive_average_pool3d "
                "adaptive_maxpool adaptivemaxpool adaptive_max_pool adaptive_maxpool1d "
                "adaptivemaxpool1d adaptive_max_pool1d adaptive_maxpool2d adaptivemaxpool2d "
                "adaptive_max_pool2d adaptive_maxpool3d adaptivemaxpool3d adaptive_max_pool3d",
    "attention": "attention mha",
    "buffer": "buffer",
    "capsule": "squash capsule digitcaps capsules capsule_length length caps_length capsule_mask "
               "caps_mask",
    "consts": "arange lt gt le ge eq ne minimum maximum where log abs to_float to_int long",
    "conv": "conv conv1d conv2d conv3d",
    "convtranspose": "convtranspose conv_transpose deconv transposed_conv convtranspose1d "
                     "conv_transpose1d deconv1d conv1d_transpose convtranspose2d conv_transpose2d "
                     "deconv2d conv2d_transpose convtranspose3d conv_transpose3d deconv3d "
                     "conv3d_transpose",
    "dense": "dense linear",
    "dropout": "dropout",
    "embedding": "embedding",
    "gather": "gather",
    "groupnorm": "groupnorm group_norm GroupNorm instancenorm instance_norm instancenorm1d "
                 "InstanceNorm1d instancenorm2d InstanceNorm2d instancenorm3d InstanceNorm3d",
    "merge": "add sub mul div concat item pack",
    "norm": "batchnorm batchnorm1d batchnorm2d batchnorm3d layernorm layer_norm rmsnorm rms_norm",
    "padcrop": "crop center_crop centre_crop centercrop crop_like crop_to center_crop_like pad",
    "param": "param parameter expand broadcast_to",
    "pixelshuffle": "pixel_shuffle pixelshuffle pixel_unshuffle pixelunshuffle",
    "pool": "maxpool max_pool maxpool1d max_pool1d maxpool2d max_pool2d maxpool3d max_pool3d "
            "avgpool avg_pool average_pool avgpool1d avg_pool1d average_pool1d avgpool2d "
            "avg_pool2d average_pool2d avgpool3d avg_pool3d average_pool3d",
    "positional": "positional positional_encoding",
    "rbm": "rbm restricted_boltzmann",
    "recurrent": "rnn simple_rnn gru lstm last",
    "reshape": "flatten reshape unflatten",
    "rope": "rope rotary",
    "sdpa": "sdpa scaled_dot_product_attention",
    "split": "split chunk",
    "stochastic": "bernoulli sample_bernoulli sample_gaussian reparameterize reparametrize "
                  "gaussian_sample gaussian_noise additive_noise drop_path stochastic_depth "
                  "droppath",
    "tensorops": "transpose swapaxes permute roll mean sum amax max amin min matmul bmm index "
                 "getitem",
    "upsample": "upsample interpolate upsampling upsample1d upsampling1d upsample2d upsampling2d "
                "upsample3d upsampling3d",
}

REGISTRY.configure(__name__, MODULES,
                   {name: module for module, names in NAMES.items() for name in names.split()})


def __getattr__(name: str):
    """A kind module as an attribute of the package (``nnspec.layers.conv``), imported then."""
    if name in MODULES:
        from importlib import import_module

        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
