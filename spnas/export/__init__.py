"""spnas.export."""
