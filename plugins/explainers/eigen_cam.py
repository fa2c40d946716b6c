"""Eigen-CAM (Muhammad & Yeasin, 2020) through grad-cam's ``EigenCAM``."""

from medkd_bench import ExplainerSpec, grad_cam_builder, hookimpl


@hookimpl
def register_explainers(register):
    register(
        ExplainerSpec(
            name="eigen-cam",
            build=grad_cam_builder("EigenCAM"),
            citation="Muhammad & Yeasin, Eigen-CAM: Class Activation Map using Principal Components, "
            "IJCNN 2020, arXiv:2008.00299",
            description="First principal component of the target layer's activations; class-agnostic "
            "and gradient-free.",
        )
    )
