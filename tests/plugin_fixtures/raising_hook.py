"""A dataset hook that raises: the CLI names the plugin and the hook in one line."""

from medkd_bench import hookimpl


@hookimpl
def register_datasets(register):
    raise ValueError("no data here")
