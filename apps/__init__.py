"""Command-line applications that compose a client with an (optional) embedded server: `ditto-render`, `ditto-live`."""
