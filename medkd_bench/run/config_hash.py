"""Config hashes: a cell's whole configuration, hashed, keys its store row and its artifacts.

So a rerun skips what is finished, a distilled cell finds its teacher, and a changed
setting trains anew instead of reusing stale results.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SCHEMA_VERSION = 1


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
