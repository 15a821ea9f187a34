"""The OpenTelemetry side: what torch said, turned into log records, compile spans and metrics (redacted where asked)."""
