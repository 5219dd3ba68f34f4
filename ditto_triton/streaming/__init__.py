"""Streaming session logic (audio chunking, LMDM windows, stitching, put-back): numpy only, no Triton import."""
