"""Grad-CAM that takes 8 s more on a teacher (Visformer-S): a teacher's explanations still running when its student could train.

With ``MEDKD_TEST_DIE_DIR`` set, a pool worker running a job that only explains a
distilled cell trained earlier (the job the pool hands out once the teacher's
explanations are done) exits at once, as the out-of-memory killer would end it;
the first time only: a marker file in that folder remembers it, so a rerun explains
the cell. The job is found on the call stack (the worker's ``job`` local).
"""

import os
import sys
import time
from pathlib import Path

from medkd_bench import ExplainerSpec, grad_cam_builder, hookimpl

SLOW_S = 8.0


def _explain_only_job_of_a_distilled_cell() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        job = frame.f_locals.get("job")
        if hasattr(job, "train") and hasattr(job, "cell"):
            return not job.train and job.cell.distilled
        frame = frame.f_back
    return False


def _die_once_in_an_explain_only_job() -> None:
    folder = os.environ.get("MEDKD_TEST_DIE_DIR")
    died = Path(folder, "died") if folder else None
    if died is not None and not died.exists() and _explain_only_job_of_a_distilled_cell():
        died.write_text(str(os.getpid()))
        os._exit(3)


def build(model, target_layers, reshape_transform=None):
    explain = grad_cam_builder("GradCAM")(model, target_layers, reshape_transform)
    teacher = type(model).__name__ == "Visformer"
    if not teacher:
        _die_once_in_an_explain_only_job()

    def slow_on_teachers(images, targets):
        if teacher:
            time.sleep(SLOW_S)
        return explain(images, targets)

    return slow_on_teachers


@hookimpl
def register_explainers(register):
    register(ExplainerSpec(name="slow-grad-cam", build=build, citation="test fixture"))
