"""Training: losses, optimiser, schedule, precise batch norm, prediction and the loop.

A teacher on labels, a student on labels (the baseline) and a student by KD
share one loop (:func:`medkd_bench.train.loop.fit`); only the loss differs.
"""
