"""VGG19 teacher (Simonyan & Zisserman, 2015), timm ``vgg19`` without batch norm."""

from medkd_bench import (
    TeacherSpec,
    TrainSettings,
    hookimpl,
    last_module,
    timm_builder,
    timm_pretrained_builder,
)


@hookimpl
def register_teachers(register):
    register(
        TeacherSpec(
            name="vgg19",
            build=timm_builder("vgg19"),
            build_pretrained=timm_pretrained_builder("vgg19"),
            # The last ReLU before the final max-pool: the finest map of the
            # deepest features (at 64 px, 4x4 instead of 2x2 after pooling).
            target_layers=last_module("features.35"),
            citation="Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale "
            "Image Recognition, ICLR 2015, arXiv:1409.1556",
            description="143.7M params at ImageNet size; no batch norm, so it needs a low LR.",
            # No batch norm: a small LR with warm-up keeps it from collapsing
            # back to chance after its first good epochs.
            train=TrainSettings(epochs=5, lr=5e-5, weight_decay=0.01, warmup_epochs=1.0),
        )
    )
