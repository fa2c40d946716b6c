"""A teacher named by $MEDKD_TEST_HOSTILE_NAME (``../x``, ``/abs/x``, ``a/b``): refused at registration."""

import os

from medkd_bench import TeacherSpec, hookimpl, last_module, timm_builder


@hookimpl
def register_teachers(register):
    register(TeacherSpec(name=os.environ["MEDKD_TEST_HOSTILE_NAME"], build=timm_builder("resnet10t"),
                         target_layers=last_module("layer4")))
