"""Config hashes: a cell's whole configuration, hashed, keys its store row and its artifacts.

So a rerun skips what is finished, a distilled cell finds its teacher, and a changed
setting trains anew instead of reusing stale results.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from medkd_bench.specs import TrainSettings

SCHEMA_VERSION = 1

#: Training settings added after stores already held cells, each at the value that trains as every cell
#: before it did: left out of the hash at that value, so adding a setting keeps the hashes (and the
#: trained checkpoints) of every cell it does not change, and changes those it does.
HASH_NEUTRAL_TRAIN = {"min_steps_per_epoch": 0}


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def hashed_train(settings: TrainSettings) -> dict[str, Any]:
    """``settings`` as a cell's config hashes them: every field, less those at their :data:`HASH_NEUTRAL_TRAIN` value."""
    return {k: v for k, v in asdict(settings).items() if k not in HASH_NEUTRAL_TRAIN or HASH_NEUTRAL_TRAIN[k] != v}
