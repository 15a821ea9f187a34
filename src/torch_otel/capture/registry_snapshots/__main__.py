"""``python -m torch_otel.capture.registry_snapshots``: write the running torch's TORCH_LOGS registry snapshot."""

from torch_otel.capture.registry_snapshots import write_current

print(write_current())
