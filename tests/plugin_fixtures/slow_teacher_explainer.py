"""Grad-CAM that takes 8 s more on a teacher (Visformer-S): a teacher's explanations still running when its student could train."""

import time

from medkd_bench import ExplainerSpec, grad_cam_builder, hookimpl

SLOW_S = 8.0


def build(model, target_layers, reshape_transform=None):
    explain = grad_cam_builder("GradCAM")(model, target_layers, reshape_transform)

    def slow_on_teachers(images, targets):
        if type(model).__name__ == "Visformer":
            time.sleep(SLOW_S)
        return explain(images, targets)

    return slow_on_teachers


@hookimpl
def register_explainers(register):
    register(ExplainerSpec(name="slow-grad-cam", build=build, citation="test fixture"))
