"""Datasets as the trainer sees them: prepared splits, batches, the decoded-split cache, file reading, checks."""
