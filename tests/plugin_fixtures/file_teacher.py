"""A teacher plugin file for ``registry_of``: a real timm model with a citation."""

from medkd_bench import TeacherSpec, hookimpl, last_module, timm_builder


@hookimpl
def register_teachers(register):
    register(TeacherSpec(name="file-teacher", build=timm_builder("resnet10t"),
                         target_layers=last_module("layer4"), citation="He et al., 2016"))
