"""Settings in: torch-otel's own TORCH_OTEL_* variables and the standard OTEL_* exporter variables, read and checked before anything starts."""
