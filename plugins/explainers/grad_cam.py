"""Grad-CAM (Selvaraju et al., 2017) through grad-cam's ``GradCAM``."""

from medkd_bench import ExplainerSpec, grad_cam_builder, hookimpl


@hookimpl
def register_explainers(register):
    register(
        ExplainerSpec(
            name="grad-cam",
            build=grad_cam_builder("GradCAM"),
            citation="Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
            "Localization, ICCV 2017, arXiv:1610.02391",
            description="Activation maps weighted by the spatially averaged gradient of the class score.",
        )
    )
