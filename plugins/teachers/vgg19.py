"""VGG19 teacher (Simonyan & Zisserman, 2015), timm ``vgg19`` without batch norm."""

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


def build_vgg19(num_classes: int, img_size: int) -> nn.Module:
    """timm's vgg19 with He fan-in initialisation of every convolution.

    timm initialises VGG's convolutions in fan-out mode, which shrinks the
    forward signal wherever channels grow (3->64->...->512, then the 7x7
    4096-wide head): at 64 px the logits of a fresh model barely depend on the
    input, and from that plateau VGG19 (no batch norm) either stays at chance
    for epochs or not, depending on the seed. Fan-in mode keeps the forward
    variance (He et al., ICCV 2015), so training starts at once.
    """
    model = _timm_vgg19(num_classes, img_size)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


@hookimpl
def register_teachers(register):
    register(
        TeacherSpec(
            name="vgg19",
            build=build_vgg19,
            build_pretrained=timm_pretrained_builder("vgg19"),
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
            revision="2",
        )
    )
