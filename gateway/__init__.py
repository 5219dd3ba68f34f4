"""Browser gateway for live sessions: serves the page and bridges a WebSocket per tab to a Triton session."""
