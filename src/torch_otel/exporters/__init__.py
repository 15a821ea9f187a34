"""Export: the providers torch-otel sets up from OTEL_*, the fast OTLP log path, the embedded-default file, and the count of what was delivered."""
