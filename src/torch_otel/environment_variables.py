"""Every environment variable torch-otel reads besides TORCH_LOGS and the standard OTEL_* ones.

Numbers are ASCII digits only (no sign, exponent, ``_`` or other scripts' digits), parsed by
``torch_otel.settings.parse_number``; an empty value means the default."""

TORCH_OTEL_TORCH_STDERR = "TORCH_OTEL_TORCH_STDERR"
"""``on`` (default) keeps torch's own stderr log output; ``off`` removes torch's stderr handlers
while the bridge is active, so TORCH_LOGS output goes to OpenTelemetry only."""

TORCH_OTEL_MAX_BODY_BYTES = "TORCH_OTEL_MAX_BODY_BYTES"
"""Largest log record body exported, in bytes (suffixes KiB/MiB accepted), from 256 bytes to 64 MiB. Default 64KiB.
Longer bodies are cut and marked with ``pytorch.log.truncated`` and ``pytorch.log.original_size``."""

TORCH_OTEL_MAX_BATCH_BYTES = "TORCH_OTEL_MAX_BATCH_BYTES"
"""Largest estimated size of one log export request, when torch-otel sets up the SDK, from 64 KiB to 256 MiB
(suffixes KiB/MiB accepted). Default 3MiB, under the 4 MiB gRPC receive limit of collectors."""

TORCH_OTEL_QUEUE_SIZE = "TORCH_OTEL_QUEUE_SIZE"
"""Records the bridge holds before it drops new ones (and counts them): a whole number from 1 to 10000000.
Default 20000."""

TORCH_OTEL_QUEUE_BYTES = "TORCH_OTEL_QUEUE_BYTES"
"""Memory the bridge's queue may hold, in bytes (suffixes KiB/MiB accepted), counting the records being exported.
Default 32MiB, at least 1MiB. A record that would go over it is dropped and counted; bodies and exception texts are
cut to TORCH_OTEL_MAX_BODY_BYTES when queued, so no record is ever held at full size."""

TORCH_OTEL_SHUTDOWN_TIMEOUT = "TORCH_OTEL_SHUTDOWN_TIMEOUT"
"""Seconds the bridge may spend flushing at exit or on SIGTERM: greater than 0 and at most 600 (decimals such as
0.5 accepted). Default 5."""

TORCH_OTEL_SPANS = "TORCH_OTEL_SPANS"
"""``on`` (default): every frame compile becomes a ``torch.compile`` span with torch's phases as children,
plus recompile and graph-break events. ``off`` exports log records only."""

TORCH_OTEL_STRUCTURED = "TORCH_OTEL_STRUCTURED"
"""``on`` forwards torch's structured trace (the TORCH_TRACE stream: graphs, guards, output code, compilation
metrics) as log records named ``pytorch.trace.<kind>``. Off by default: torch then computes every payload."""

TORCH_OTEL_METRICS = "TORCH_OTEL_METRICS"
"""``on`` (default): compile duration, recompiles, graph breaks, cache lookups and the bridge's health as
OpenTelemetry metrics. ``off`` records none."""

TORCH_OTEL_FILE = "TORCH_OTEL_FILE"
"""Where `torch-otel run` writes every signal (OTLP JSON Lines) when no OTLP endpoint or exporter is configured.
Checked up front: not a directory, in an existing directory this user can write to (the file itself is created by the
first process with something to export). Default: ``./torch-otel-<date>-<time>-<pid>.jsonl``."""

TORCH_OTEL_REDACT_PATHS = "TORCH_OTEL_REDACT_PATHS"
"""``off`` (default), ``hash`` (a path's directory becomes a short SHA-256 prefix, the file name stays) or
``remove`` (only the file name stays). Covers the directories torch-otel knows (working directory, home, ``sys.path``,
the directories of the files torch compiles or quotes) in absolute, relative and torch's shortened forms, and any
other absolute path, in ``code.file.path`` and in every body, attribute, reason and stack trace."""

TORCH_OTEL_REDACT_CODE = "TORCH_OTEL_REDACT_CODE"
"""``on`` replaces the bodies of code-carrying artifacts (output_code, graph_code, bytecode, ...) and structured
graph/code payloads with ``<code redacted: N bytes>``. Default ``off``."""

TORCH_OTEL_FAST_PATH = "TORCH_OTEL_FAST_PATH"
"""``on`` (default): when `torch-otel run` sets up OTLP log export, torch's records are encoded straight to OTLP
protobuf in batches and sent by the SDK's OTLP exporter, skipping the SDK's per-record pipeline (about 6x less CPU
per record). ``off`` routes them through the SDK LoggerProvider, so its processors see them."""

ALL = (
    TORCH_OTEL_TORCH_STDERR,
    TORCH_OTEL_MAX_BODY_BYTES,
    TORCH_OTEL_MAX_BATCH_BYTES,
    TORCH_OTEL_QUEUE_SIZE,
    TORCH_OTEL_QUEUE_BYTES,
    TORCH_OTEL_SHUTDOWN_TIMEOUT,
    TORCH_OTEL_SPANS,
    TORCH_OTEL_STRUCTURED,
    TORCH_OTEL_METRICS,
    TORCH_OTEL_FILE,
    TORCH_OTEL_REDACT_PATHS,
    TORCH_OTEL_REDACT_CODE,
    TORCH_OTEL_FAST_PATH,
)
