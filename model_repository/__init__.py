"""Triton model repository: rendering configs from the export manifest, python-backend models, server launcher."""
