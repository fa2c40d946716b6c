"""A teacher whose builder kills its process: a pool worker dies, only its own cell fails."""

import os

from medkd_bench import TeacherSpec, hookimpl, last_module


def build(num_classes, img_size):
    os._exit(3)


@hookimpl
def register_teachers(register):
    register(TeacherSpec(name="dies", build=build, target_layers=last_module("x")))
