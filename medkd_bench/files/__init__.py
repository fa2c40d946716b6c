"""File jobs every layer shares: atomic writes (:mod:`.atomic`), paths kept inside their folder (:mod:`.paths`), SHA-256 digests recorded and checked (:mod:`.digests`)."""
