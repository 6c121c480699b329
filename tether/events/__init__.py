"""The per-session event log, live wake-ups, and the SSE stream."""
