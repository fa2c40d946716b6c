"""A teacher whose builder returns a string: the error names the plugin's spec, not a later AttributeError."""

from medkd_bench import TeacherSpec, hookimpl, last_module


@hookimpl
def register_teachers(register):
    register(TeacherSpec(name="str-teacher", build=lambda num_classes, img_size: "not a model",
                         target_layers=last_module("x")))
