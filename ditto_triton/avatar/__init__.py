"""Avatar registration: face detection, Ditto crop, eye features (no Triton import)."""
