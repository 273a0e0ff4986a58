"""Planning: the pure diff from specs + live state to an ordered plan."""
