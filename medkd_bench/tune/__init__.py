"""Equal tuning budgets for every method and for the label-only baseline (``run --tune N``).

:mod:`~medkd_bench.tune.space` says what is tuned (each method's declared
search space, and the training options every arm shares);
:mod:`~medkd_bench.tune.study` runs the trials, selected on validation only,
and keeps them in the run store so an interrupted tuning resumes.
"""
