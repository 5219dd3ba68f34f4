"""Python-backend model implementations (the thin Triton adapters)."""
