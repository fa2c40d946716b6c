"""Searched OFA students: one student per spec file written by ``medkd-bench student search``.

``medkd-bench student search --latency-ms 8`` finds a subnet of the same
once-for-all supernet OFA-595 comes from, sized for the user's own machine,
and writes ``.medkd/students/<name>.json``. This plugin registers every such
file as a student (OFA-595 stays the paper's reference student beside them).

Where files are found: the folders or files listed in ``$MEDKD_STUDENTS``
(``os.pathsep``-separated), or ``.medkd/students/`` when it is unset. A bad
file fails with one line naming it. Each student's revision is a hash of the
file's subnet settings (and supernet weights), so editing a file retrains the
cells that use it instead of reusing stale results.

The plugin also adds the host's ``medkd-bench student search`` command
(:mod:`medkd_bench.cli.student`) through ``register_commands``: the command
exists where the students it makes are registered, and only there.
"""

from medkd_bench import StudentSpec, hookimpl, ofa_head_split, ofa_stride16_block
from medkd_bench.nas import iter_searched_students
from medkd_bench_plugins.students.ofa_595 import TRAIN as OFA_595_TRAIN

CITATION = ("Cai et al., Once-for-All: Train One Network and Specialize it for Efficient Deployment, "
            "ICLR 2020, arXiv:1908.09791 (subnet searched by medkd-bench for a local budget)")


@hookimpl
def register_students(register):
    for student in iter_searched_students():
        register(
            StudentSpec(
                name=student.name,
                build=student.build,
                target_layers=ofa_stride16_block,  # as for OFA-595
                head_split=ofa_head_split,
                citation=CITATION,
                description=student.describe(),
                # What OFA-595 trains with: same supernet family, size range and CPU fast path,
                cpu_channels_last=True,
                # and OFA-595's GPU choice and recipe (see its spec).
                gpu_precision="tf32",
                gpu_channels_last=False,
                train=OFA_595_TRAIN,
                revision=student.revision,
            )
        )


@hookimpl
def register_commands(cli):
    from medkd_bench.cli.student import student  # the host's command; imported only when a CLI asks

    cli.add_command(student)
