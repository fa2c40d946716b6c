"""Grad-CAM++ (Chattopadhay et al., 2018) through grad-cam's ``GradCAMPlusPlus``."""

from medkd_bench import ExplainerSpec, grad_cam_builder, hookimpl


@hookimpl
def register_explainers(register):
    register(
        ExplainerSpec(
            name="grad-cam-plus-plus",
            build=grad_cam_builder("GradCAMPlusPlus"),
            citation="Chattopadhay et al., Grad-CAM++: Generalized Gradient-Based Visual Explanations for "
            "Deep Convolutional Networks, WACV 2018, arXiv:1710.11063",
            description="Grad-CAM with pixel-wise weighting of positive gradients; better for several objects.",
        )
    )
