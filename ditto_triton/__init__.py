"""Ditto talking-head serving on NVIDIA Triton: shared, Triton-free core (profiles, stage specs)."""

__version__ = "0.1.0"
