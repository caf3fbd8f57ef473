"""Sources: turn bytes of log files into QueryEvents (framing, parsing, assembling)."""
