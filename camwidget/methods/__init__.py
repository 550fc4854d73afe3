"""CAM methods, one family per module; :mod:`registry` maps names to them."""
