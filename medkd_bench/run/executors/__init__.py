"""Where cells run: in this process, in worker processes on this machine, or as tasks on a Ray cluster.

Cells are independent apart from one edge: a distilled cell needs its teacher's
checkpoint. :mod:`.local` runs the plan in order in this process.
:mod:`.pool` (``--jobs N``) runs whole cells in N worker processes on this
machine. :mod:`.ray` submits every cell as a Ray task with its resource
request. :mod:`.worker` is what worker processes and Ray tasks run: they
rebuild the registry, data and runtime from a picklable recipe.

Every executor computes and hands back; none writes the run store. The
runner opens a job for each cell (:meth:`MatrixRunner.open_job
<medkd_bench.run.runner.MatrixRunner.open_job>`) and records what comes back,
in the driver process, whichever executor computed it.
"""
