"""VGG19 teacher (Simonyan & Zisserman, 2015), timm ``vgg19`` without batch norm."""

import torch
import torch.nn.functional as F
from torch import nn

from medkd_bench import (
    TeacherSpec,
    TrainSettings,
    hookimpl,
    last_module,
    timm_builder,
    timm_pretrained_builder,
)

_timm_vgg19 = timm_builder("vgg19")
_timm_vgg19_pretrained = timm_pretrained_builder("vgg19")


class WholeInputConv2d(nn.Conv2d):
    """A convolution that, on an input exactly its kernel's size, runs as the matrix product it then is.

    timm's VGG head (``pre_logits``) is a 7x7 convolution over the 7x7 map it
    pools the features to (inputs under 224 px), then a 1x1 one: each yields one
    output position, so each is a fully connected layer. oneDNN runs the 7x7
    shape as a direct convolution, about 7x slower on one CPU thread than the
    same product as a matrix multiply, which made the head about a third of
    VGG19's training step at 64 px (``benchmarks/bench_vgg_head.py``). The
    weights, their names in the state dict and the function are unchanged
    (logits agree to float32 rounding); larger maps (224 px and up) still convolve.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.kernel_size:
            return super().forward(x)
        return F.linear(x.flatten(1), self.weight.flatten(1), self.bias)[..., None, None]


def head_as_matmul(model: nn.Module) -> nn.Module:
    """``model`` (a timm VGG) with its head's convolutions as :class:`WholeInputConv2d`, in place."""
    for conv in (model.pre_logits.fc1, model.pre_logits.fc2):
        plain = (conv.padding == (0, 0) and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1)
        if type(conv) is not nn.Conv2d or not plain:
            raise TypeError(f"VGG head layer {conv!r} is not a plain convolution: timm's VGG changed")
        conv.__class__ = WholeInputConv2d  # keeps the parameters, their names and every setting
    return model


def build_vgg19_pretrained(num_classes: int, img_size: int) -> nn.Module:
    """timm's ImageNet vgg19, its head run as :func:`head_as_matmul` does."""
    return head_as_matmul(_timm_vgg19_pretrained(num_classes, img_size))


def build_vgg19(num_classes: int, img_size: int) -> nn.Module:
    """timm's vgg19 with He fan-in initialisation of every convolution.

    timm initialises VGG's convolutions in fan-out mode, which shrinks the
    forward signal wherever channels grow (3->64->...->512, then the 7x7
    4096-wide head): at 64 px the logits of a fresh model barely depend on the
    input, and from that plateau VGG19 (no batch norm) either stays at chance
    for epochs or not, depending on the seed. Fan-in mode keeps the forward
    variance (He et al., ICCV 2015), so training starts at once. The head runs
    as :func:`head_as_matmul` makes it.
    """
    model = _timm_vgg19(num_classes, img_size)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return head_as_matmul(model)


@hookimpl
def register_teachers(register):
    register(
        TeacherSpec(
            name="vgg19",
            build=build_vgg19,
            build_pretrained=build_vgg19_pretrained,
            # The last ReLU before the final max-pool: the finest map of the
            # deepest features (at 64 px, 4x4 instead of 2x2 after pooling).
            target_layers=last_module("features.35"),
            citation="Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale "
            "Image Recognition, ICLR 2015, arXiv:1409.1556",
            description="143.7M params at ImageNet size; no batch norm, so it needs a low LR.",
            # No batch norm: a small LR with warm-up keeps it from collapsing
            # back to chance after its first good epochs.
            cpu_bf16=True,
            cpu_channels_last=True,
            train=TrainSettings(epochs=80, lr=5e-5, weight_decay=0.01, warmup_epochs=1.0),  # cap: stops on a plateau
            # 3: the head as matrix products (WholeInputConv2d): the same function, rounded differently.
            revision="3",
        )
    )
