"""Visformer-S teacher (Chen et al., 2021), timm ``visformer_small``."""

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
            name="visformer-s",
            build=timm_builder("visformer_small", accepts_img_size=True),
            build_pretrained=timm_pretrained_builder("visformer_small", accepts_img_size=True),
            # Stride 16 like every built-in model (4x4 maps at 64 px); 384 channels.
            target_layers=last_module("stage2"),
            revision="2",  # CAM target: stage3 (1), stage2 (2)
            citation="Chen et al., Visformer: The Vision-friendly Transformer, ICCV 2021, arXiv:2104.12533",
            description="Convolution-transformer hybrid, 40.2M params at ImageNet size; batch norm.",
            cpu_bf16=True,
            cpu_channels_last=True,
            train=TrainSettings(epochs=80, lr=5e-4, weight_decay=0.05, warmup_epochs=1.0),  # cap: stops on a plateau
        )
    )
