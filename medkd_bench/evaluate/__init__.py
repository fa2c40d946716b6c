"""Scores for one trained model: classification metrics, cost (params, MACs, latency, throughput), statistics."""
