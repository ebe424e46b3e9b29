"""Reports: run summaries for people (tables) and machines (JSON)."""
