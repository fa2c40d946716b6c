"""Built-in medkd-bench plugins: each module uses only the public ``medkd_bench`` API."""
