"""`mlops watch`: a long-running reconciler that watches live drift and outside changes."""
