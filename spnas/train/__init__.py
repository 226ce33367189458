"""spnas.train."""
