"""Score-CAM (Wang et al., 2020) through grad-cam's ``ScoreCAM``: the source study's explainer."""

from medkd_bench import ExplainerSpec, grad_cam_builder, hookimpl


@hookimpl
def register_explainers(register):
    register(
        ExplainerSpec(
            name="score-cam",
            # One forward pass per activation channel, batched 128 at a time (VGG19 in bf16 on 2 CPU
            # cores: 125 masked images/s at batch 128, 106 at 64). On a GPU every channel of the target
            # layers (136 for the built-ins, 512 at most) in one batch: one launch sequence per image.
            build=grad_cam_builder("ScoreCAM", batch_size=128, gpu_batch_size=512),
            citation="Wang et al., Score-CAM: Score-Weighted Visual Explanations for Convolutional "
            "Neural Networks, CVPR Workshops 2020, arXiv:1910.01279",
            description="Gradient-free CAM: each activation map is weighted by the class score of the "
            "input masked by it. Costs one forward pass per target-layer channel per image.",
        )
    )
