"""Gate evaluation: metric samples + gate -> Measurement (pure)."""
