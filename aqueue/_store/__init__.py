"""The database seam: the only package that runs SQL."""
