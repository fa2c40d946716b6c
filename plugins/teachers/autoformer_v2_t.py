"""AutoFormer-V2-T (S3-T) teacher (Chen et al., 2021), timm ``swin_s3_tiny_224``."""

from medkd_bench import (
    TeacherSpec,
    TrainSettings,
    hookimpl,
    last_module,
    nhwc_to_nchw,
    timm_builder,
    timm_pretrained_builder,
)


@hookimpl
def register_teachers(register):
    register(
        TeacherSpec(
            name="autoformer-v2-t",
            build=timm_builder("swin_s3_tiny_224", accepts_img_size=True, drop_path_rate=0.0),
            build_pretrained=timm_pretrained_builder("swin_s3_tiny_224", accepts_img_size=True),
            # Stride 16 like every built-in model (4x4 maps at 64 px), 384 channels; the stages emit
            # (N, H, W, C) token maps.
            target_layers=last_module("layers.2"),
            revision="2",  # CAM target: layers.3 (1), layers.2 (2)
            reshape_transform=nhwc_to_nchw,
            citation="Chen et al., Searching the Search Space of Vision Transformer (AutoFormerV2 / S3), "
            "NeurIPS 2021, arXiv:2111.14725",
            description="S3-T: embed 96, depths 2-2-6-2, heads 3-6-12-24, windows 7-7-14-7; 28.3M params.",
            # From random weights it stays at chance with lr >= 5e-4; small batches (more steps) and
            # a warm-up let it learn. On synthetic-cxr's teacher split (1,080 images, seed 0), chosen on
            # validation accuracy: lr 3e-4 with 2 warm-up epochs reached 0.53 by epoch 13, then fell to
            # chance for good; lr 1e-4 with 5 stopped on a plateau at 0.55; lr 2e-4 with 5 reached 0.80
            # by epoch 20 and was still improving (benchmarks/RESULTS.md, session 14).
            cpu_bf16=True,
            cpu_channels_last=True,
            train=TrainSettings(epochs=80, batch_size=16, lr=2e-4, weight_decay=0.05, warmup_epochs=5.0),  # cap
        )
    )
