"""Models as a deployment runs them, checked against the trained float32 model before any figure is kept.

:mod:`.onnx`: trained students exported to ONNX, checked and timed on ONNX
Runtime's CPU provider (``run --onnx``). :mod:`.cuda`: batch-1 latency on a
GPU in the spec's deployment dtype, replayed from a CUDA graph (every CUDA run).
"""
