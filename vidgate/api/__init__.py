"""HTTP surfaces: one module per surface; errors.py renders the error tree in each surface's shape."""
