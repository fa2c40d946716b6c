"""What people read: markdown leaderboards, their statistics and provenance, rendered from the store."""
