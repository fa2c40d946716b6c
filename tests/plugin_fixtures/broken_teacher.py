"""A teacher whose builder raises a two-line error: the matrix records one line and goes on."""

from medkd_bench import TeacherSpec, hookimpl, last_module


def build(num_classes, img_size):
    raise RuntimeError("out of cheese\nsecond line that must not show")


@hookimpl
def register_teachers(register):
    register(TeacherSpec(name="broken", build=build, target_layers=last_module("x")))
