"""The torch side: TORCH_LOGS parsed as torch parses it, the logging handler on torch's loggers, and the hooks on torch's compile machinery."""
