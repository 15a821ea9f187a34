"""The shipped backend configuration in collector-config/: every file parses, the collector pipelines are wired,
the compose stack is pinned and mounts files that exist, and every metric, label, event and span name that the
dashboard and the alert rules query is one torch-otel really emits (taken from torch_otel.catalog, never copied).

PyYAML is needed for the YAML files (the `test` extra); promtool, if installed (Debian package `prometheus`),
validates the Prometheus config, the rules, a unit test of the recompile-storm rule and the dashboard's PromQL.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME

from torch_otel import catalog

CONFIG = Path(__file__).resolve().parents[1] / "collector-config"
COLLECTOR_CONFIGS = ("otelcol-contrib.yaml", "gateway.yaml", "agent.yaml")
BACKEND_CONFIGS = ("otelcol-contrib.yaml", "gateway.yaml")  # the ones that write to Jaeger/Tempo/Loki/Prometheus
DASHBOARD = "grafana/dashboards/torch-compile.json"
DATASOURCES = "grafana/provisioning/datasources/datasources.yaml"
GRAFANA_ALERTS = "grafana/provisioning/alerting/torch-compile-alerts.yaml"
PROM_CONFIG = "prometheus/prometheus.yml"
PROM_ALERTS = "prometheus/alerts.yml"
STORM_ALERT, SKEW_ALERT = "TorchCompileRecompileStorm", "TorchCompileRankSkew"  # the two rules of PROM_ALERTS
COMPOSE = "docker-compose.yaml"

# Component types of otelcol-contrib, current names and the deprecated aliases older collectors know them by.
KNOWN_RECEIVERS = {"otlp"}
KNOWN_PROCESSORS = {"memory_limiter", "batch", "transform", "resource_detection", "resourcedetection", "resource"}
KNOWN_EXPORTERS = {"otlp_grpc", "otlp", "otlp_http", "otlphttp", "prometheus", "prometheusremotewrite",
                   "load_balancing", "loadbalancing", "debug"}
KNOWN_EXTENSIONS = {"health_check"}

PROMQL_WORDS = {
    # aggregations and their modifiers
    "sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "by", "without",
    # binary operators and vector matching
    "and", "or", "unless", "bool", "on", "ignoring", "group_left", "group_right", "offset",
    # functions
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "clamp_min", "clamp_max", "abs",
    "absent", "vector", "scalar", "time", "round", "ceil", "floor", "sort", "sort_desc", "label_replace",
    "sum_over_time", "avg_over_time", "max_over_time", "min_over_time", "last_over_time",
    # Grafana's variable-query function
    "label_values",
}


# ---------------------------------------------------------------------------------------------- helpers


def read_yaml(rel: str) -> Any:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it is part of the `test` extra)")
    return yaml.safe_load((CONFIG / rel).read_text(encoding="utf-8"))


def read_json(rel: str) -> Any:
    return json.loads((CONFIG / rel).read_text(encoding="utf-8"))


def ctype(component_id: str) -> str:
    """`otlp_grpc/tempo` -> `otlp_grpc`: the collector's component type of a `type[/name]` id."""
    return component_id.split("/", 1)[0]


def metric(name: str) -> str:
    """How Prometheus spells one of torch-otel's instruments."""
    return catalog.PROMETHEUS_NAMES[name]


def label(key: str) -> str:
    return catalog.prometheus_label(key)


def allowed_promql_names() -> set[str]:
    """Every metric and label name torch-otel's metrics have in Prometheus, plus PromQL's own words."""
    duration = metric(catalog.METRIC_COMPILE_DURATION)
    metrics = set(catalog.PROMETHEUS_NAMES.values()) | {duration + suffix for suffix in ("_bucket", "_sum", "_count")}
    labels = {label(value) for name, value in vars(catalog).items() if name.startswith("LABEL_")}
    resource = {label(key) for key in (SERVICE_NAME, catalog.RESOURCE_RANK, catalog.RESOURCE_LOCAL_RANK,
                                       catalog.RESOURCE_WORLD_SIZE, catalog.RESOURCE_TORCH_VERSION)}
    return metrics | labels | resource | {"le"} | PROMQL_WORDS


def promql_identifiers(expr: str) -> set[str]:
    """The names a PromQL expression refers to: metric names, label names, functions and keywords. Grafana
    variables, string literals (label values) and range durations are left out."""
    expr = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    return set(re.findall(r"(?<![\w.:])[A-Za-z_][A-Za-z0-9_:]*", expr))


def grouping_labels(expr: str) -> set[str]:
    return {item.strip() for group in re.findall(r"\bby\s*\(([^)]*)\)", expr) for item in group.split(",")}


def dashboard_targets() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in read_json(DASHBOARD)["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def datasource_uid(panel: dict[str, Any], target: dict[str, Any] | None = None) -> str:
    ds = (target or {}).get("datasource") or panel.get("datasource") or {}
    return ds.get("uid", "") if isinstance(ds, dict) else str(ds)


def datasource_by_type(kind: str) -> dict[str, Any]:
    matches = [ds for ds in read_yaml(DATASOURCES)["datasources"] if ds["type"] == kind]
    assert len(matches) == 1, f"expected one {kind} data source"
    return matches[0]


def prometheus_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) for every Prometheus query shipped: dashboard targets and variables, the Tempo data
    source's trace-to-metrics queries, the Grafana alert rule and the Prometheus alert rules."""
    prom_uid = datasource_by_type("prometheus")["uid"]
    exprs = []
    for panel, target in dashboard_targets():
        if datasource_uid(panel, target) == prom_uid:
            exprs.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in read_json(DASHBOARD)["templating"]["list"]:
        if variable.get("datasource", {}).get("uid") == prom_uid:
            exprs.append((f"variable {variable['name']}", variable["definition"]))
            exprs.append((f"variable {variable['name']} query", variable["query"]["query"]))
    for query in datasource_by_type("tempo")["jsonData"]["tracesToMetrics"]["queries"]:
        exprs.append((f"Tempo trace-to-metrics {query['name']!r}", query["query"].replace("$$", "$")))
    for rule in grafana_rules():
        for item in rule["data"]:
            if item["datasourceUid"] == prom_uid:
                exprs.append((f"Grafana alert {rule['uid']}", item["model"]["expr"]))
    for group in read_yaml(PROM_ALERTS)["groups"]:
        for rule in group["rules"]:
            exprs.append((f"Prometheus rule {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return exprs


def grafana_rules() -> list[dict[str, Any]]:
    return [rule for group in read_yaml(GRAFANA_ALERTS)["groups"] for rule in group["rules"]]


def compose_services() -> dict[str, Any]:
    return read_yaml(COMPOSE)["services"]


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source relative to collector-config/, target) of every bind mount of a compose service."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append((source, target))
    return mounts


def host_of(endpoint: str) -> str:
    return (urlsplit(endpoint).hostname if "//" in endpoint else endpoint.rsplit(":", 1)[0]) or ""


def port_of(endpoint: str) -> int:
    return int(endpoint.rstrip("/").rsplit(":", 1)[1].split("/")[0])


# ---------------------------------------------------------------------------------------------- every file


CONFIG_FILES = sorted(
    str(path.relative_to(CONFIG)) for pattern in ("*.yaml", "*.yml", "*.json") for path in CONFIG.rglob(pattern)
)


def test_the_expected_files_are_shipped() -> None:
    expected = {*COLLECTOR_CONFIGS, COMPOSE, DASHBOARD, DATASOURCES, GRAFANA_ALERTS, PROM_CONFIG, PROM_ALERTS,
                "grafana/provisioning/dashboards/dashboards.yaml", "loki/loki.yaml", "tempo/tempo.yaml"}
    assert expected <= set(CONFIG_FILES)
    assert (CONFIG / "README.md").is_file()


@pytest.mark.parametrize("rel", CONFIG_FILES)
def test_every_config_file_parses(rel: str) -> None:
    data = read_json(rel) if rel.endswith(".json") else read_yaml(rel)
    assert isinstance(data, dict) and data, f"{rel} is empty or not a mapping"


# ---------------------------------------------------------------------------------------------- collectors


@pytest.mark.parametrize("rel", COLLECTOR_CONFIGS)
def test_pipelines_reference_only_defined_components(rel: str) -> None:
    config = read_yaml(rel)
    service = config["service"]
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    assert set(service["pipelines"]) == {"traces", "logs", "metrics"}
    for name, pipeline in service["pipelines"].items():
        for kind in used:
            for component in pipeline.get(kind, []):
                defined = config.get(kind) or {}
                assert component in defined, f"{rel}: pipeline {name} uses undefined {kind[:-1]} {component}"
                used[kind].add(component)
        assert pipeline["receivers"] and pipeline["exporters"], f"{rel}: pipeline {name} has no receiver or exporter"
    for kind, names in used.items():
        assert set(config.get(kind) or {}) == names, f"{rel}: {kind} defined but used by no pipeline"
    for extension in service.get("extensions", []):
        assert extension in config["extensions"], f"{rel}: undefined extension {extension}"


@pytest.mark.parametrize("rel", COLLECTOR_CONFIGS)
def test_component_types_exist_in_contrib_and_loki_exporter_is_gone(rel: str) -> None:
    config = read_yaml(rel)
    for kind, known in (("receivers", KNOWN_RECEIVERS), ("processors", KNOWN_PROCESSORS),
                        ("exporters", KNOWN_EXPORTERS), ("extensions", KNOWN_EXTENSIONS)):
        for component in config.get(kind) or {}:
            assert ctype(component) in known, f"{rel}: unknown {kind[:-1]} type {ctype(component)!r}"
    assert all(ctype(e) != "loki" for e in config["exporters"]), "the `loki` exporter was removed from contrib"


@pytest.mark.parametrize("rel", COLLECTOR_CONFIGS)
def test_memory_limiter_first_and_batch_last_in_every_pipeline(rel: str) -> None:
    for name, pipeline in read_yaml(rel)["service"]["pipelines"].items():
        processors = pipeline["processors"]
        assert ctype(processors[0]) == "memory_limiter", f"{rel}: {name} does not start with memory_limiter"
        assert ctype(processors[-1]) == "batch", f"{rel}: {name} does not end with batch"


@pytest.mark.parametrize("rel", COLLECTOR_CONFIGS)
def test_otlp_grpc_receiver_accepts_more_than_4_mib(rel: str) -> None:
    receivers = read_yaml(rel)["receivers"]
    otlp = [r for name, r in receivers.items() if ctype(name) == "otlp"]
    assert otlp
    for receiver in otlp:
        protocols = receiver["protocols"]
        assert set(protocols) == {"grpc", "http"}
        assert protocols["grpc"]["max_recv_msg_size_mib"] > 4
        assert port_of(protocols["grpc"]["endpoint"]) == 4317 and port_of(protocols["http"]["endpoint"]) == 4318


def exporters_of(config: dict[str, Any], pipeline: str) -> dict[str, dict[str, Any]]:
    return {name: config["exporters"][name] or {} for name in config["service"]["pipelines"][pipeline]["exporters"]}


@pytest.mark.parametrize("rel", BACKEND_CONFIGS)
def test_backend_collectors_write_to_jaeger_tempo_loki_and_prometheus(rel: str) -> None:
    config = read_yaml(rel)
    traces = exporters_of(config, "traces")
    assert {ctype(n) for n in traces} == {"otlp_grpc"}
    assert sorted(e["endpoint"] for e in traces.values()) == ["jaeger:4317", "tempo:4317"]

    logs = exporters_of(config, "logs")
    assert [(ctype(n), e["endpoint"]) for n, e in logs.items()] == [("otlp_http", "http://loki:3100/otlp")]

    metrics = exporters_of(config, "metrics")
    assert [ctype(n) for n in metrics] == ["prometheus"]
    prometheus = next(iter(metrics.values()))
    assert port_of(prometheus["endpoint"]) == 8889
    # The dashboards select on service_name and the rank labels: resource attributes must become labels...
    assert prometheus["resource_to_telemetry_conversion"]["enabled"] is True
    # ...and the names must carry the unit and _total suffixes that catalog.PROMETHEUS_NAMES has.
    assert prometheus["translation_strategy"] == "UnderscoreEscapingWithSuffixes"
    assert metric(catalog.METRIC_RECOMPILES).endswith("_total")


@pytest.mark.parametrize("rel", BACKEND_CONFIGS)
def test_logs_pipeline_copies_the_event_name_for_loki(rel: str) -> None:
    config = read_yaml(rel)
    transforms = [p for p in config["service"]["pipelines"]["logs"]["processors"] if ctype(p) == "transform"]
    assert len(transforms) == 1
    statements = " ".join(config["processors"][transforms[0]]["log_statements"])
    assert 'log.attributes["event_name"]' in statements and "log.event_name" in statements


def test_agent_load_balances_traces_by_trace_id_and_logs_metrics_by_another_key() -> None:
    config = read_yaml("agent.yaml")
    routing: dict[str, set[str]] = {}
    for pipeline in ("traces", "logs", "metrics"):
        exporters = exporters_of(config, pipeline)
        assert exporters and all(ctype(n) in {"load_balancing", "loadbalancing"} for n in exporters)
        routing[pipeline] = {e.get("routing_key", "traceID" if pipeline == "traces" else "service")
                             for e in exporters.values()}
        for exporter in exporters.values():
            resolver = exporter["resolver"]
            assert len(resolver) == 1 and set(resolver) <= {"dns", "static", "k8s"}
            if "dns" in resolver:
                assert resolver["dns"]["hostname"] and resolver["dns"]["port"] == 4317
            if "static" in resolver:
                assert resolver["static"]["hostnames"]
            assert "endpoint" not in exporter["protocol"]["otlp"], "the resolver supplies the endpoint"
    assert routing["traces"] == {"traceID"}
    assert "traceID" not in routing["logs"] and "traceID" not in routing["metrics"]
    assert routing["metrics"] <= {"service", "resource", "metric", "streamID", "attributes"}


def test_agent_adds_host_name_and_documents_the_rank_attributes() -> None:
    config = read_yaml("agent.yaml")
    detection = [processor for name, processor in config["processors"].items()
                 if ctype(name) in {"resource_detection", "resourcedetection"}]
    assert detection and "system" in detection[0]["detectors"]
    for rel in ("agent.yaml", "gateway.yaml", "README.md"):
        text = (CONFIG / rel).read_text(encoding="utf-8")
        for key in (catalog.RESOURCE_RANK, catalog.RESOURCE_WORLD_SIZE, catalog.RESOURCE_LOCAL_RANK, SERVICE_NAME,
                    "host.name"):
            assert key in text, f"{rel} does not name the resource attribute {key}"


# ---------------------------------------------------------------------------------------------- compose


def test_compose_images_are_pinned() -> None:
    for name, service in compose_services().items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: image {image!r} is not pinned to a version"


def test_compose_bind_mounts_exist_and_the_collector_reads_the_shipped_config() -> None:
    services = compose_services()
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            assert (CONFIG / source).exists(), f"{name} mounts {source}, which is not in collector-config/"
    collector = next(s for s in services.values() if s["image"].startswith("otel/opentelemetry-collector-contrib:"))
    config_arg = next(arg for arg in collector["command"] if arg.startswith("--config="))
    mounted = dict((target, source) for source, target in bind_mounts(collector))
    assert (CONFIG / mounted[config_arg.split("=", 1)[1]]).resolve() == (CONFIG / "otelcol-contrib.yaml").resolve()
    published = {int(p.split(":")[-1]) for p in collector["ports"]}
    assert {4317, 4318, 8889} <= published


def test_compose_wiring_matches_the_configs() -> None:
    services = compose_services()
    collector = read_yaml("otelcol-contrib.yaml")
    for name, exporter in collector["exporters"].items():
        if "endpoint" in (exporter or {}) and ctype(name) != "prometheus":
            assert host_of(exporter["endpoint"]) in services, f"{name} sends to a host that is not a compose service"
    for job in read_yaml(PROM_CONFIG)["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                assert host_of(target) in services, f"Prometheus scrapes {target}: not a compose service"
    for ds in read_yaml(DATASOURCES)["datasources"]:
        assert host_of(ds["url"]) in services, f"Grafana data source {ds['name']} points at an unknown host"
    # Grafana finds its provisioning and the dashboard where docker-compose mounts them.
    grafana = next(s for s in services.values() if s["image"].startswith("grafana/grafana:"))
    mounts = dict(bind_mounts(grafana))
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = read_yaml("grafana/provisioning/dashboards/dashboards.yaml")["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == mounts["./grafana/dashboards"]
    # Prometheus loads the rule file that is shipped, from where it is mounted.
    prometheus = next(s for s in services.values() if s["image"].startswith("prom/prometheus:"))
    prom_mounts = {target: source for source, target in bind_mounts(prometheus)}
    config_path = next(a for a in prometheus["command"] if a.startswith("--config.file=")).split("=", 1)[1]
    assert prom_mounts[config_path] == "./" + PROM_CONFIG
    for rule_file in read_yaml(PROM_CONFIG)["rule_files"]:
        assert prom_mounts[str(Path(config_path).parent / rule_file)] == "./" + PROM_ALERTS


# ---------------------------------------------------------------------------------------------- Grafana


def test_datasources_have_fixed_uids_and_the_dashboard_uses_only_those() -> None:
    uids = {ds["uid"] for ds in read_yaml(DATASOURCES)["datasources"]}
    assert {"prometheus", "loki", "tempo"} <= uids
    dashboard = read_json(DASHBOARD)
    referenced = {datasource_uid(panel, target) for panel, target in dashboard_targets()}
    referenced |= {datasource_uid(panel) for panel in dashboard["panels"]}
    referenced |= {v["datasource"]["uid"] for v in dashboard["templating"]["list"] if "datasource" in v}
    assert referenced <= uids, f"unknown data source uids {referenced - uids}"


def test_tempo_links_to_loki_by_trace_id_and_loki_links_back() -> None:
    loki, tempo = datasource_by_type("loki"), datasource_by_type("tempo")
    to_logs = tempo["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == loki["uid"]
    assert to_logs["filterByTraceID"] is True
    # The trace id is structured metadata, not part of the line: the query must filter on trace_id.
    assert to_logs["customQuery"] is True and 'trace_id="$${__trace.traceId}"' in to_logs["query"]
    assert {"key": SERVICE_NAME, "value": label(SERVICE_NAME)} in to_logs["tags"]
    derived = loki["jsonData"]["derivedFields"]
    assert {"trace_id"} <= {d["matcherRegex"] for d in derived if d["matcherType"] == "label"}
    assert all(d["datasourceUid"] == tempo["uid"] and d["url"] == "$${__value.raw}" for d in derived)


def test_dashboard_has_the_service_variable_and_every_query_uses_it() -> None:
    dashboard = read_json(DASHBOARD)
    (service,) = [v for v in dashboard["templating"]["list"] if v["name"] == "service"]
    assert label(SERVICE_NAME) in service["definition"]
    # Loki refuses a stream selector that matches the empty string, such as {service_name=~".*"}.
    assert service["includeAll"] and not re.fullmatch(service["allValue"], "")
    for panel, target in dashboard_targets():
        query = target.get("expr") or target.get("query", "")
        assert "$service" in query or "${service" in query, f"panel {panel['title']!r} ignores $service"


def test_dashboard_covers_the_required_panels() -> None:
    prom_uid, loki_uid, tempo_uid = (datasource_by_type(t)["uid"] for t in ("prometheus", "loki", "tempo"))
    targets = list(dashboard_targets())
    exprs = [t["expr"] for p, t in targets if datasource_uid(p, t) == prom_uid]
    recompiles, graph_breaks = metric(catalog.METRIC_RECOMPILES), metric(catalog.METRIC_GRAPH_BREAKS)
    buckets, cache = metric(catalog.METRIC_COMPILE_DURATION) + "_bucket", metric(catalog.METRIC_CACHE_LOOKUPS)

    assert any(recompiles in e and "rate(" in e and re.search(r"\*\s*60\b", e)
               and grouping_labels(e) == {label(catalog.LABEL_FUNCTION), label(catalog.LABEL_CAUSE)} for e in exprs)
    for quantile in ("0.5", "0.95"):
        assert any(f"histogram_quantile({quantile}," in e and buckets in e
                   and grouping_labels(e) == {"le", label(catalog.LABEL_PHASE)} for e in exprs), quantile
    assert any(graph_breaks in e and label(catalog.LABEL_FUNCTION) in grouping_labels(e) for e in exprs)
    assert any(cache in e and "/" in e and f'{label(catalog.LABEL_CACHE_RESULT)}="hit"' in e
               and grouping_labels(e) == {label(catalog.LABEL_CACHE)} for e in exprs)
    assert any(p["type"] == "logs" and datasource_uid(p, t) == loki_uid for p, t in targets)
    assert any(datasource_uid(p, t) == tempo_uid and t.get("queryType") == "traceql" for p, t in targets)


def test_every_promql_name_is_one_torch_otel_emits() -> None:
    allowed = allowed_promql_names()
    exprs = prometheus_exprs()
    assert len(exprs) >= 8
    for where, expr in exprs:
        names = promql_identifiers(expr)
        assert names - allowed == set(), f"{where}: {sorted(names - allowed)} are not names torch-otel emits: {expr}"
        assert names & (set(catalog.PROMETHEUS_NAMES.values()) | {metric(catalog.METRIC_COMPILE_DURATION) + suffix
                        for suffix in ("_count", "_bucket", "_sum")}), f"{where} queries no torch-otel metric"


def test_promql_identifier_extraction() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, a_b) (rate(m_bucket{x=~"$service", y="p.q|r"}[$__rate_interval])))'
            " * 60 > bool 1e3")
    assert promql_identifiers(expr) == {"histogram_quantile", "sum", "by", "le", "a_b", "rate", "m_bucket", "x", "y",
                                        "bool"}


def test_loki_panel_selects_the_recompile_and_graph_break_records() -> None:
    loki_uid = datasource_by_type("loki")["uid"]
    queries = [t["expr"] for p, t in dashboard_targets() if datasource_uid(p, t) == loki_uid]
    assert queries
    for query in queries:
        assert re.match(r'\{\s*' + label(SERVICE_NAME) + r'=~"\$service"\s*\}', query), query
        (events,) = re.findall(r'\|\s*event_name\s*=~\s*"([^"]*)"', query)
        names = set(events.split("|"))
        assert {catalog.EVENT_RECOMPILE, catalog.EVENT_GRAPH_BREAK} <= names
        assert names <= {catalog.EVENT_RECOMPILE, catalog.EVENT_GRAPH_BREAK, catalog.EVENT_RECOMPILE_LIMIT}


def test_tempo_panel_searches_the_compile_spans() -> None:
    tempo_uid = datasource_by_type("tempo")["uid"]
    queries = [t["query"] for p, t in dashboard_targets() if datasource_uid(p, t) == tempo_uid]
    assert queries
    for query in queries:
        assert re.findall(r'\bname\s*=\s*"([^"]*)"', query) == [catalog.SPAN_COMPILE], query


# ---------------------------------------------------------------------------------------------- alert rules


def test_grafana_alert_rule_is_a_recompile_storm_on_the_recompile_metric() -> None:
    (rule,) = grafana_rules()
    uids = {ds["uid"] for ds in read_yaml(DATASOURCES)["datasources"]}
    refs = {item["refId"]: item for item in rule["data"]}
    assert rule["condition"] in refs and rule["for"] == "5m"
    for item in rule["data"]:
        assert item["datasourceUid"] in uids | {"__expr__"}
    (query,) = [i for i in rule["data"] if i["datasourceUid"] == datasource_by_type("prometheus")["uid"]]
    expr = query["model"]["expr"]
    assert metric(catalog.METRIC_RECOMPILES) in expr and re.search(r"\*\s*60\b", expr)
    assert label(catalog.LABEL_FUNCTION) not in re.findall(r"without\s*\(([^)]*)\)", expr)[0]
    (evaluator,) = [c["evaluator"] for c in refs[rule["condition"]]["model"]["conditions"]]
    assert evaluator == {"type": "gt", "params": [10]}
    assert "$" not in json.dumps(rule["annotations"]), "provisioning would expand $ as an environment variable"


def test_prometheus_alert_rule_matches_the_grafana_one() -> None:
    (rule,) = [r for g in read_yaml(PROM_ALERTS)["groups"] for r in g["rules"] if r["alert"] == STORM_ALERT]
    (grafana,) = grafana_rules()
    (query,) = [i for i in grafana["data"] if i["datasourceUid"] == datasource_by_type("prometheus")["uid"]]
    assert rule["expr"] == query["model"]["expr"] + " > 10"
    assert rule["for"] == "5m" and metric(catalog.METRIC_RECOMPILES) in rule["expr"]


# ---------------------------------------------------------------------------------------------- promtool

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian: apt-get install prometheus); Prometheus files only parsed as YAML",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


@needs_promtool
def test_promtool_accepts_the_prometheus_config_and_rules() -> None:
    for args in (("check", "config", str(CONFIG / PROM_CONFIG)), ("check", "rules", str(CONFIG / PROM_ALERTS))):
        result = promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_test_of_the_recompile_storm_rule(tmp_path: Path) -> None:
    """12 recompiles a minute of one function (two causes, 6 each) fire after 5 minutes; two ranks of another
    function at 6 a minute each do not: the rule is per process and function, summed over causes."""
    yaml = pytest.importorskip("yaml")
    name, fn, cause, service, rank = (metric(catalog.METRIC_RECOMPILES), label(catalog.LABEL_FUNCTION),
                                      label(catalog.LABEL_CAUSE), label(SERVICE_NAME), label(catalog.RESOURCE_RANK))

    def series(function: str, why: str, extra: str = "") -> dict[str, str]:
        return {"series": f'{name}{{{service}="trainer",{fn}="{function}",{cause}="{why}"{extra}}}', "values": "0+6x20"}

    (rule,) = [r for g in read_yaml(PROM_ALERTS)["groups"] for r in g["rules"] if r["alert"] == STORM_ALERT]
    labels = {service: "trainer", fn: "forward"}

    def render(template: str) -> str:
        return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], template)

    tests = {
        "rule_files": [str(CONFIG / PROM_ALERTS)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [series("forward", "shape"), series("forward", "dtype"),
                             series("step", "shape", f',{rank}="0"'), series("step", "shape", f',{rank}="1"')],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": rule["alert"], "exp_alerts": []},
                {"eval_time": "10m", "alertname": rule["alert"], "exp_alerts": [{
                    "exp_labels": {**labels, **rule["labels"]},
                    "exp_annotations": {k: render(v) for k, v in rule["annotations"].items()},
                }]},
            ],
        }],
    }
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_parses_every_promql_query_of_dashboard_and_alerts(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    substitutions = {"${service:regex}": ".*", "$service": ".*", "$__rate_interval": "5m", "$__range": "1h",
                     "$__interval": "1m", "$__tags": f'{label(SERVICE_NAME)}="trainer"'}
    rules = []
    for index, (where, expr) in enumerate(prometheus_exprs()):
        if expr.lstrip().startswith("label_values("):
            continue  # a Grafana variable function, not PromQL
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: unhandled Grafana variable in {expr}"
        rules.append({"record": f"torch_otel_check:query_{index}", "expr": expr})
    rule_file = tmp_path / "queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}), encoding="utf-8")
    result = promtool("check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------- rotel-agent

# The exporter part of README.md's rotel equivalent of otelcol-contrib.yaml (the test checks that README says it).
ROTEL_EXPORTER_FLAGS = ("--otlp-grpc-max-recv-msg-size-mib 16",
                        "--exporters tempo:otlp,loki:otlp,prometheus:otlp",
                        "--exporters-traces tempo --exporters-logs loki --exporters-metrics prometheus")
ROTEL_LOKI_PATH, ROTEL_PROMETHEUS_PATH = "/otlp", "/api/v1/otlp"


class _HttpOtlpSink:
    """Loopback HTTP server standing in for Loki's and Prometheus's OTLP endpoints: records (path, body)."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[tuple[str, bytes]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                received.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.collector
def test_readme_rotel_command_sends_traces_logs_and_metrics_where_documented(otlp_sink: Any, tmp_path: Path) -> None:
    """Runs rotel-agent with README's exporter flags, Tempo replaced by the in-process OTLP/gRPC sink and Loki /
    Prometheus by a loopback HTTP sink: a span, a pytorch.recompile event and a metric arrive, the logs at
    <loki>/otlp/v1/logs with their event name, the metrics at <prometheus>/api/v1/otlp/v1/metrics."""
    import os
    import time

    from collector import accepts, agent_path, free_port, stop_process
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    readme = " ".join((CONFIG / "README.md").read_text(encoding="utf-8").replace("\\\n", " ").split())
    for flags in ROTEL_EXPORTER_FLAGS:
        assert flags in readme, f"README's rotel command no longer has {flags!r}"
    assert f"ROTEL_EXPORTER_LOKI_ENDPOINT=http://loki:3100{ROTEL_LOKI_PATH}" in readme
    assert f"ROTEL_EXPORTER_PROMETHEUS_ENDPOINT=http://prometheus:9090{ROTEL_PROMETHEUS_PATH}" in readme

    http_sink = _HttpOtlpSink()
    grpc_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
    env.update(NO_COLOR="1",
               ROTEL_EXPORTER_TEMPO_ENDPOINT=otlp_sink.endpoint,
               ROTEL_EXPORTER_TEMPO_COMPRESSION="none",
               ROTEL_EXPORTER_LOKI_ENDPOINT=f"http://127.0.0.1:{http_sink.port}{ROTEL_LOKI_PATH}",
               ROTEL_EXPORTER_LOKI_PROTOCOL="http",
               ROTEL_EXPORTER_PROMETHEUS_ENDPOINT=f"http://127.0.0.1:{http_sink.port}{ROTEL_PROMETHEUS_PATH}",
               ROTEL_EXPORTER_PROMETHEUS_PROTOCOL="http")
    command = [str(agent_path()), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
               "--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--batch-timeout", "50ms",
               "--pid-file", str(tmp_path / "rotel.pid"), "--log-file", str(tmp_path / "rotel.log")]
    command += " ".join(ROTEL_EXPORTER_FLAGS).split()
    output = tmp_path / "rotel.out"
    with open(output, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    providers: list[Any] = []
    try:
        deadline = time.monotonic() + 10
        while not accepts(grpc_port):
            assert proc.poll() is None, f"rotel-agent exited: {output.read_text(errors='replace')}"
            assert time.monotonic() < deadline, "rotel-agent did not start listening"
            time.sleep(0.02)
        endpoint = f"http://127.0.0.1:{grpc_port}"
        resource = Resource.create({SERVICE_NAME: "trainer", catalog.RESOURCE_RANK: 0})

        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True)))
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        providers += [tracer_provider, logger_provider, meter_provider]

        with tracer_provider.get_tracer("test").start_as_current_span(catalog.SPAN_COMPILE):
            logger_provider.get_logger("test").emit(body="guard failed", event_name=catalog.EVENT_RECOMPILE)
        counter = meter_provider.get_meter("test").create_counter(catalog.METRIC_RECOMPILES)
        counter.add(1, {catalog.LABEL_CAUSE: "shape"})
        metrics_data = reader.get_metrics_data()
        assert OTLPMetricExporter(endpoint=endpoint, insecure=True).export(metrics_data).name == "SUCCESS"

        otlp_sink.wait_for(lambda s: [sp for sp in s.spans() if sp.name == catalog.SPAN_COMPILE] or None)
        deadline = time.monotonic() + 10
        expected_paths = {ROTEL_LOKI_PATH + "/v1/logs", ROTEL_PROMETHEUS_PATH + "/v1/metrics"}
        while expected_paths - {p for p, _ in http_sink.received}:
            assert time.monotonic() < deadline, f"only {[p for p, _ in http_sink.received]} arrived"
            time.sleep(0.02)
        event_names = set()
        for path, body in http_sink.received:
            if path.endswith("/v1/logs"):
                request = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
                event_names |= {r.event_name for rl in request.resource_logs for sl in rl.scope_logs
                                for r in sl.log_records}
        assert catalog.EVENT_RECOMPILE in event_names
    finally:
        for provider in providers:
            provider.shutdown()
        stop_process(proc)
        http_sink.close()




# ---------------------------------------------------------------------------------------------- cross-rank compile skew


def skew_rule() -> dict[str, Any]:
    (rule,) = [r for g in read_yaml(PROM_ALERTS)["groups"] for r in g["rules"] if r.get("alert") == SKEW_ALERT]
    return rule


def compile_roots() -> set[str]:
    """The pytorch.compile.phase values of whole compiles (not of the phases nested in them)."""
    from torch_otel.capture.torch_hooks import COMPILE_ROOTS

    return set(COMPILE_ROOTS.values())


def root_phase_filters(expr: str) -> list[set[str]]:
    return [set(m.split("|")) for m in re.findall(label(catalog.LABEL_PHASE) + r'\s*=~\s*"([^"]*)"', expr)]


def skew_left_side(expr: str) -> str:
    """The rule's expression without its threshold: each rank's compile seconds over the median rank's."""
    left, _, threshold = expr.rpartition(">")
    assert threshold.strip() == "30", expr
    return " ".join(left.split())


def test_rank_skew_rule_compares_each_ranks_compile_time_with_the_median_rank() -> None:
    rule = skew_rule()
    expr = rule["expr"]
    duration_sum = metric(catalog.METRIC_COMPILE_DURATION) + "_sum"
    service, rank = label(SERVICE_NAME), label(catalog.RESOURCE_RANK)
    # Every selector is the compile-duration sum of the compile roots only (nested phases would count twice).
    selectors = re.findall(r"\b(\w+)\{", expr)
    assert selectors and set(selectors) == {duration_sum}, selectors
    assert root_phase_filters(expr) == [compile_roots()] * len(selectors)
    assert grouping_labels(expr) == {service, rank}
    assert re.search(r"quantile\s+by\s*\(\s*" + service + r"\s*\)\s*\(\s*0\.5\s*,", expr), "median over the job"
    assert re.search(r"on\s*\(\s*" + service + r"\s*\)\s*group_left", expr)
    assert "offset 5m" in expr and rule["for"] == "1m" and rule["labels"] == {"severity": "warning"}
    skew_left_side(expr)
    text = json.dumps(rule["annotations"])
    for needed in (catalog.EVENT_RECOMPILE, "pytorch.compile.start", "pytorch.compile.slow", catalog.SPAN_COMPILE,
                   "resource." + catalog.RESOURCE_RANK, "$labels." + rank, "$labels." + service):
        assert needed in text, f"the alert's annotations do not mention {needed}"


def test_dashboard_shows_compile_time_per_rank_and_the_alerts_skew() -> None:
    prom_uid = datasource_by_type("prometheus")["uid"]
    service, rank = label(SERVICE_NAME), label(catalog.RESOURCE_RANK)
    duration_sum = metric(catalog.METRIC_COMPILE_DURATION) + "_sum"
    targets = [(p, t) for p, t in dashboard_targets() if datasource_uid(p, t) == prom_uid and duration_sum in t["expr"]]
    side_by_side = [p for p, t in targets if p["type"] == "barchart" and t.get("instant")
                    and grouping_labels(t["expr"]) == {service, rank} and "quantile" not in t["expr"]]
    assert len(side_by_side) == 1 and side_by_side[0]["options"]["xField"] == rank
    # The skew panel plots exactly the alert's left side, narrowed to the dashboard's $service.
    alert = skew_left_side(skew_rule()["expr"]).replace(duration_sum + "{", duration_sum + '{service_name=~"$service", ')
    skew = [(p, t) for p, t in targets if "quantile" in t["expr"]]
    assert len(skew) == 1
    panel, target = skew[0]
    assert " ".join(target["expr"].split()).replace("( ", "(").replace(" )", ")") == \
        alert.replace("( ", "(").replace(" )", ")")
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 30], "the red line is the alert's threshold"
    for _, t in targets:
        assert root_phase_filters(t["expr"]) and all(f == compile_roots() for f in root_phase_filters(t["expr"]))
        assert t["legendFormat"] == "{{service_name}} rank {{pytorch_distributed_rank}}"


def _compile_sum_series(rank: int, values: dict[str, str]) -> list[dict[str, str]]:
    """One rank's pytorch_compile_duration_seconds_sum series as the collector exposes them (resource attributes as
    labels): the torch.compile root and two of its nested phases, whose seconds are also inside the root's."""
    name = metric(catalog.METRIC_COMPILE_DURATION) + "_sum"
    identity = (f'{label(SERVICE_NAME)}="trainer",job="trainer",{label(catalog.RESOURCE_RANK)}="{rank}",'
                f'{label(catalog.RESOURCE_LOCAL_RANK)}="{rank}",{label(catalog.RESOURCE_WORLD_SIZE)}="2",'
                f'host_name="node0",{label(catalog.LABEL_OUTCOME)}="success"')
    return [{"series": f'{name}{{{identity},{label(catalog.LABEL_PHASE)}="{phase}"}}', "values": series}
            for phase, series in values.items()]


def _expected_skew_alert(rank: int, value: str) -> dict[str, Any]:
    rule = skew_rule()
    labels = {label(SERVICE_NAME): "trainer", label(catalog.RESOURCE_RANK): str(rank)}

    def render(template: str) -> str:
        template = re.sub(r'\{\{\s*\$value\s*\|\s*printf\s*"%\.0f"\s*\}\}', value, template)
        return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], template)

    rendered = {k: render(v) for k, v in rule["annotations"].items()}
    assert "{{" not in json.dumps(rendered), rendered
    return {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": rendered}


@needs_promtool
def test_promtool_unit_test_of_the_rank_skew_rule(tmp_path: Path) -> None:
    """Two ranks of one job, evaluated by Prometheus's own rule engine (promtool test rules), one sample a minute:

    slow: both compiled 60 s at start; at minute 10 rank 1 alone finishes a 90 s recompile (its nested phases grow
    too and must not count). It is 45 s over the median (the middle of 0 and 90): the alert fires for rank 1 only,
    after its 1 minute `for`, and clears once the recompile is more than 5 minutes old.
    balanced: both ranks recompile 90 s at minute 10: no alert.
    startup: rank 0's series appears at minute 1 (60 s), rank 1's only at minute 6 with 360 s: its first
    sample is the slow compile (increase() would ignore it); the alert fires for rank 1, 180 s over the median."""
    yaml = pytest.importorskip("yaml")
    rank0_steady = {"torch.compile": "60x20", "entire_frame_compile": "55x20", "backend_compile": "40x20"}
    recompiled = {"torch.compile": "60x9 150x10", "entire_frame_compile": "55x9 140x10",
                  "backend_compile": "40x9 120x10"}
    alert = skew_rule()["alert"]

    def case(series: list[dict[str, str]], checks: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, Any]:
        return {"interval": "1m", "input_series": series,
                "alert_rule_test": [{"eval_time": t, "alertname": alert, "exp_alerts": exp} for t, exp in checks]}

    slow = case(_compile_sum_series(0, rank0_steady) + _compile_sum_series(1, recompiled),
                [("9m", []), ("10m", []), ("11m", [_expected_skew_alert(1, "45")]),
                 ("14m", [_expected_skew_alert(1, "45")]), ("16m", [])])
    balanced = case(_compile_sum_series(0, recompiled) + _compile_sum_series(1, recompiled),
                    [("9m", []), ("11m", []), ("12m", []), ("14m", [])])
    startup = case(_compile_sum_series(0, {"torch.compile": "_ 60x19", "entire_frame_compile": "_ 55x19"})
                   + _compile_sum_series(1, {"torch.compile": "_x6 360x14", "entire_frame_compile": "_x6 350x14"}),
                   [("5m", []), ("6m", []), ("7m", [_expected_skew_alert(1, "180")]), ("12m", [])])
    tests = {"rule_files": [str(CONFIG / PROM_ALERTS)], "evaluation_interval": "1m", "tests": [slow, balanced, startup]}
    test_file = tmp_path / "skew_test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def readme_printing_rotel_command() -> list[str]:
    """README's first rotel command (the one that prints what arrives), as arguments after `$ROTEL`."""
    text = (CONFIG / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    (block,) = [b for b in blocks if "--exporter blackhole" in b]
    line = " ".join(block.replace("\\\n", " ").split("\n", 1)[1].split())
    assert line.startswith("$ROTEL start "), line
    return line.split()[1:]


@pytest.mark.collector
def test_readme_printing_rotel_command_shows_traces_logs_and_metrics(tmp_path: Path) -> None:
    """Runs README's printing rotel command exactly as written, on free loopback ports instead of 4317/4318, sends
    a span, a log record and a metric over OTLP/gRPC, and finds each one in what rotel-agent prints."""
    import os
    import time

    from collector import accepts, agent_path, free_port, stop_process
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    args = readme_printing_rotel_command()
    for signal in ("traces", "logs", "metrics"):
        assert f"--debug-log {signal}" in " ".join(args), f"README's rotel command does not print {signal}"
    grpc_port, http_port = free_port(), free_port()
    ports = {"127.0.0.1:4317": f"127.0.0.1:{grpc_port}", "127.0.0.1:4318": f"127.0.0.1:{http_port}"}
    assert set(ports) <= set(args), args
    command = [str(agent_path()), *(ports.get(arg, arg) for arg in args),
               "--pid-file", str(tmp_path / "rotel.pid"), "--log-file", str(tmp_path / "rotel.log")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
    env["NO_COLOR"] = "1"
    output = tmp_path / "rotel.out"
    with open(output, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    providers: list[Any] = []
    try:
        deadline = time.monotonic() + 10
        while not accepts(grpc_port):
            assert proc.poll() is None, f"rotel-agent exited: {output.read_text(errors='replace')}"
            assert time.monotonic() < deadline, "rotel-agent did not start listening"
            time.sleep(0.02)
        endpoint = f"http://127.0.0.1:{grpc_port}"
        resource = Resource.create({SERVICE_NAME: "printed-by-rotel"})
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True)))
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        providers += [tracer_provider, logger_provider, meter_provider]

        with tracer_provider.get_tracer("test").start_as_current_span(catalog.SPAN_COMPILE):
            logger_provider.get_logger("test").emit(body="guard failed: printed", event_name=catalog.EVENT_RECOMPILE)
        meter_provider.get_meter("test").create_counter(catalog.METRIC_RECOMPILES).add(1, {catalog.LABEL_CAUSE: "shape"})
        assert OTLPMetricExporter(endpoint=endpoint, insecure=True).export(reader.get_metrics_data()).name == "SUCCESS"

        wanted = {"span": catalog.SPAN_COMPILE, "log record": "guard failed: printed",
                  "metric": catalog.METRIC_RECOMPILES}
        deadline = time.monotonic() + 10
        while True:
            printed = output.read_text(errors="replace")
            missing = {what: text for what, text in wanted.items() if text not in printed}
            if not missing:
                break
            assert time.monotonic() < deadline, f"rotel-agent did not print {missing}:\n{printed[-3000:]}"
            time.sleep(0.05)
        assert "ResourceMetrics" in printed and "printed-by-rotel" in printed
    finally:
        for provider in providers:
            provider.shutdown()
        stop_process(proc)


STILL_RUNNING_ALERT = "TorchCompileStillRunning"


def test_promtool_unit_test_of_the_still_running_rule(tmp_path: Path) -> None:
    """pytorch_compile_in_progress per rank, one sample a minute, as the collector exposes it: rank 1 enters a
    compile at minute 1 and never leaves it: the alert fires for rank 1 after 10 minutes, not before; rank 0
    compiles for a minute every other minute and never fires (every sample for 10 minutes must be in a compile)."""
    yaml = pytest.importorskip("yaml")
    (rule,) = [r for g in read_yaml(PROM_ALERTS)["groups"] for r in g["rules"] if r["alert"] == STILL_RUNNING_ALERT]
    name = metric(catalog.METRIC_IN_PROGRESS)
    assert name in rule["expr"] and rule["for"] == "10m"

    def series(rank: int, values: str) -> dict[str, str]:
        identity = f'{label(SERVICE_NAME)}="trainer",job="trainer",{label(catalog.RESOURCE_RANK)}="{rank}"'
        return {"series": f'{name}{{{identity},{label(catalog.LABEL_PHASE)}="torch.compile"}}', "values": values}

    labels = {label(SERVICE_NAME): "trainer", "job": "trainer", label(catalog.RESOURCE_RANK): "1"}
    annotations = {key: _render_labels(text, labels) for key, text in rule["annotations"].items()}
    assert "{{" not in json.dumps(annotations), annotations

    def expect(eval_time: str, firing: bool) -> dict[str, Any]:
        alerts = [{"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": annotations}] if firing else []
        return {"eval_time": eval_time, "alertname": STILL_RUNNING_ALERT, "exp_alerts": alerts}

    stuck = {"interval": "1m", "input_series": [series(1, "0 1x20"), series(0, "0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 1")],
             "alert_rule_test": [expect("5m", False), expect("10m", False), expect("11m", True), expect("15m", True)]}
    tests = {"rule_files": [str(CONFIG / PROM_ALERTS)], "evaluation_interval": "1m", "tests": [stuck]}
    test_file = tmp_path / "still_running_test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def _render_labels(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], template)

