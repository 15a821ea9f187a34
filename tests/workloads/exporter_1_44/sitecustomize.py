"""Makes the installed OTLP/HTTP log exporter look like opentelemetry-exporter-otlp-proto-http 1.44, which has no
``_client`` (it posts through ``_session``): the fast path must see that and hand records to the SDK pipeline."""

from opentelemetry.exporter.otlp.proto.http import _log_exporter

_Real = _log_exporter.OTLPLogExporter


class _LikeRelease144(_Real):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if type(self) is not _LikeRelease144 and hasattr(self, "_client"):  # only torch-otel's subclass loses it
            del self._client


_log_exporter.OTLPLogExporter = _LikeRelease144
