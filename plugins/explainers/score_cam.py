"""Score-CAM (Wang et al., 2020) through grad-cam's ``ScoreCAM``."""

import functools
import types

from medkd_bench import ExplainerSpec, hookimpl


def _silence_progress_bars() -> None:
    """grad-cam's ScoreCAM draws a tqdm bar per image; the host has its own progress display."""
    import tqdm
    from pytorch_grad_cam import score_cam

    if getattr(score_cam.tqdm, "medkd_quiet", False):
        return
    score_cam.tqdm = types.SimpleNamespace(tqdm=functools.partial(tqdm.tqdm, disable=True), medkd_quiet=True)


def build_score_cam(model, target_layers, reshape_transform=None, batch_size: int = 64):
    _silence_progress_bars()
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = ScoreCAM(model=model, target_layers=list(target_layers), reshape_transform=reshape_transform)
    # One forward pass per activation channel: batch them.
    cam.batch_size = batch_size

    def explain(images, targets):
        return cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])

    return explain


@hookimpl
def register_explainers(register):
    register(
        ExplainerSpec(
            name="score-cam",
            build=build_score_cam,
            citation="Wang et al., Score-CAM: Score-Weighted Visual Explanations for Convolutional "
            "Neural Networks, CVPR Workshops 2020, arXiv:1910.01279",
            description="Gradient-free CAM: each activation map is weighted by the class score of the "
            "input masked by it.",
        )
    )
