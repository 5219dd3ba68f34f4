"""Triton ensembles: fixed DAGs over the stage models (no Python in the path)."""
