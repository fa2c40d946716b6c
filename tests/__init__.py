"""medkd-bench's test suite: a package, so tests import shared helpers as ``tests.helpers``."""
