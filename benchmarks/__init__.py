"""Benchmarks: perf_analyzer per stage, Locust sessions, ratios, the report and the real-time gate."""
