"""Grafana dashboards (executive, on-call, debug) as a pure function of the SLO spec.

Built with Grafana's own ``grafana-foundation-sdk`` (the Grafana 12 build,
dashboard schemaVersion 41).  The panels are data in
:mod:`jaxobs.generate.panels`; this module only turns them into builder calls,
adds the variables and links, and encodes deterministic JSON (sorted keys,
stable UIDs and panel ids), so regenerating never changes an unchanged file.

``tests/test_dashboards.py`` type-checks the output against the
``@grafana/schema`` TypeScript ``Dashboard`` type with ``tsc``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import bargauge, gauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from jaxobs import catalog
from jaxobs.generate import panel_rows, panels, rules
from jaxobs.generate.names import ONCALL_DASHBOARD_TITLE
from jaxobs.generate.names import dashboard_uid as _uid
from jaxobs.slo.model import Spec

__all__ = ["DASHBOARDS", "TAG", "build_dashboards", "dashboard_uid"]

TAG = "jaxobs"
DATASOURCE = common_m.DataSourceRef(type_val="prometheus", uid="${datasource}")
COST_VARIABLE = "accelerator_cost_per_hour"


@dataclass(frozen=True)
class DashboardDef:
    key: str  # file name part: dashboards/jaxobs-<key>.json
    title: str
    description: str
    rows: Callable[[Spec], tuple[panels.Row, ...]]
    time_from: str
    refresh: str
    variables: tuple[str, ...]  # from _VARIABLES below, in display order


DASHBOARDS: tuple[DashboardDef, ...] = (
    DashboardDef("executive", "jaxobs / Executive",
                 "Product health and cost: SLO status and error budget, success rate, "
                 "latency, throughput, accelerator utilization and cost per inference.",
                 panel_rows.executive_rows, "now-7d", "5m", ("job", "service", COST_VARIABLE)),
    DashboardDef("oncall", ONCALL_DASHBOARD_TITLE,
                 "Incident triage: error rate and SLO burn, device memory and OOMs, compile "
                 "events and queue depth, in-flight requests, targets and versions.",
                 panel_rows.oncall_rows, "now-3h", "30s", ("job", "service", "function")),
    DashboardDef("debug", "jaxobs / Debug",
                 "Root cause and tuning: per-function compilation, cache behaviour, kernel "
                 "latency, FLOP/s, fusions, memory and arrays, GPU/TPU details, goodput.",
                 panel_rows.debug_rows, "now-6h", "1m", ("job", "service", "function")),
)


def dashboard_uid(title: str) -> str:
    """A stable UID: a short hash of the title (as kubernetes-mixin does)."""
    return _uid(title)


def build_dashboards(spec: Spec) -> dict[str, str]:
    """``{"dashboards/jaxobs-<name>.json": json_text}`` for the three dashboards, and the
    Prometheus datasource's exemplar link when the spec names a trace backend."""
    files = {f"dashboards/jaxobs-{d.key}.json": _encode(_dashboard(d, spec)) for d in DASHBOARDS}
    if spec.dashboards.trace_url:
        files[DATASOURCE_PATH] = _datasource_provisioning(spec)
    return files


DATASOURCE_PATH = "dashboards/grafana-datasource.yaml"


def _datasource_provisioning(spec: Spec) -> str:
    """A Grafana provisioning file for the Prometheus datasource with exemplar links: Grafana
    configures "exemplar -> trace" on the datasource, not on dashboards."""
    from jaxobs.generate.render import dump_yaml

    body = {"apiVersion": 1, "datasources": [{
        "name": "Prometheus", "type": "prometheus", "access": "proxy",
        "url": "http://prometheus:9090",
        "jsonData": {"exemplarTraceIdDestinations": [
            {"name": "trace_id", "url": spec.dashboards.trace_url, "urlDisplayLabel": "Open trace"}]},
    }]}
    note = ("Merge into your Grafana datasource provisioning (set url to your Prometheus): latency\n"
            "panels then link each exemplar's trace id to your trace backend.")
    return dump_yaml(body, spec.source, note)


# --- variables ------------------------------------------------------------------------
_ALL = dash_m.VariableOption(selected=True, text=["All"], value=["$__all"])


def _query_variable(name: str, label: str, query: str, description: str) -> dash_b.QueryVariable:
    return (dash_b.QueryVariable(name).label(label).description(description)
            .datasource(DATASOURCE).query(query)
            .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dash_m.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
            .multi(True).include_all(True).all_value(".*").current(_ALL))


def _variable(name: str, spec: Spec) -> cogbuilder.Builder[dash_m.VariableModel]:
    if name == "job":
        return _query_variable(
            "job", "Job", f"label_values({catalog.BUILD_INFO.name}, job)",
            "Prometheus jobs scraping jaxobs (the application or its sidecar).")
    if name == "service":
        return _query_variable(
            "service", "Service", f"label_values({panels.sel(catalog.REQUESTS)}, service)",
            "Services (jaxobs.request/step names).")
    if name == "function":
        return _query_variable(
            "function", "Function", f"label_values({panels.sel(catalog.CALLS)}, function)",
            "Instrumented (jaxobs.jit) functions.")
    if name == COST_VARIABLE:
        price = spec.dashboards.accelerator_cost_per_hour
        return (dash_b.ConstantVariable(COST_VARIABLE).label("Accelerator cost per hour")
                .description(f"Price of one accelerator-hour in {spec.dashboards.currency}, from "
                             "the SLO spec (dashboards.accelerator_cost_per_hour). Change it "
                             "here or in the spec.")
                .value(f"{price:g}"))
    raise ValueError(f"unknown dashboard variable {name!r}")


# --- panels ---------------------------------------------------------------------------
_PANEL_BUILDERS: dict[str, Any] = {
    "timeseries": timeseries.Panel,
    "stat": stat.Panel,
    "gauge": gauge.Panel,
    "bargauge": bargauge.Panel,
    "table": table.Panel,
}


def _panel(p: panels.Panel, panel_id: int, spec: Spec) -> cogbuilder.Builder[dash_m.Panel]:
    b = (_PANEL_BUILDERS[p.kind]().id(panel_id).title(p.title).description(p.description)
         .datasource(DATASOURCE).unit(p.unit).span(p.width).height(p.height))
    for i, query in enumerate(p.queries):
        target = (prometheus.Dataquery().ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
                  .expr(query.expr).legend_format(query.legend))
        if p.kind == "timeseries":
            target.range()
        else:
            target.instant()
        if p.kind == "table":
            target.format(PromQueryFormat.TABLE)
        if query.exemplar:
            target.exemplar(True)
        b.with_target(target)

    steps = p.steps or ((None, "green"),)
    b.thresholds(dash_b.ThresholdsConfig().mode(dash_m.ThresholdsMode.ABSOLUTE)
                 .steps([dash_m.Threshold(value=v, color=color) for v, color in steps]))
    if p.min is not None:
        b.min(p.min)
    if p.max is not None:
        b.max(p.max)
    if p.decimals is not None:
        b.decimals(p.decimals)
    if p.mappings:
        b.mappings([dash_m.ValueMap(options={
            value: dash_m.ValueMappingResult(text=text, color=color, index=i)
            for i, (value, text, color) in enumerate(p.mappings)})])
    if p.runbook:
        b.links([dash_b.DashboardLink(f"Runbook: {p.runbook}")
                 .type(dash_m.DashboardLinkType.LINK).url(rules.runbook_url(spec, p.runbook))
                 .tooltip(f"What to check and do when {p.runbook} fires").target_blank(True)])

    reduce = common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    if isinstance(b, timeseries.Panel):
        (b.tooltip(common_b.VizTooltipOptions().mode(common_m.TooltipDisplayMode.MULTI)
                   .sort(common_m.SortOrder.DESCENDING))
         .legend(common_b.VizLegendOptions().display_mode(common_m.LegendDisplayMode.LIST)
                 .placement(common_m.LegendPlacement.BOTTOM).show_legend(True))
         .fill_opacity(80 if p.bars else 10))
        if p.bars:
            b.draw_style(common_m.GraphDrawStyle.BARS)
        if p.stack:
            b.stacking(common_b.StackingConfig().mode(common_m.StackingMode.NORMAL))
        if p.steps:
            b.thresholds_style(common_b.GraphThresholdsStyleConfig()
                               .mode(common_m.GraphThresholdsStyleMode.DASHED))
    elif isinstance(b, stat.Panel):
        (b.reduce_options(reduce).graph_mode(common_m.BigValueGraphMode.AREA)
         .color_mode(common_m.BigValueColorMode.VALUE))
    elif isinstance(b, gauge.Panel):
        b.reduce_options(reduce).show_threshold_markers(True)
    elif isinstance(b, bargauge.Panel):
        (b.reduce_options(reduce).orientation(common_m.VizOrientation.HORIZONTAL)
         .display_mode(common_m.BarGaugeDisplayMode.GRADIENT))
    elif isinstance(b, table.Panel):
        if p.hide_columns or p.rename_columns:
            b.with_transformation(dash_m.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {col: True for col in p.hide_columns},
                "renameByName": dict(p.rename_columns)}))
    return b


# --- dashboards -----------------------------------------------------------------------
def _source(spec: Spec) -> str:
    # A relative path keeps the output identical across checkouts.
    return os.path.basename(spec.source) if os.path.isabs(spec.source) else spec.source


def _dashboard(d: DashboardDef, spec: Spec) -> dash_m.Dashboard:
    b = (dash_b.Dashboard(d.title).uid(dashboard_uid(d.title))
         .description(f"{d.description} Generated by `jaxobs generate {_source(spec)}`; do not "
                      "edit by hand: change the SLO spec and regenerate.")
         .tags([TAG, f"{TAG}-{d.key}"])
         .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
         .time(d.time_from, "now").timezone("browser").refresh(d.refresh)
         .links([
             dash_b.DashboardLink("jaxobs dashboards").type(dash_m.DashboardLinkType.DASHBOARDS)
             .tags([TAG]).as_dropdown(False).include_vars(True).keep_time(True)
             .tooltip("Executive, on-call and debug dashboards"),
             dash_b.DashboardLink("Runbooks").type(dash_m.DashboardLinkType.LINK)
             .url(spec.runbook_base_url).icon("doc").target_blank(True)
             .tooltip("One runbook per jaxobs alert"),
         ])
         .with_variable(dash_b.DatasourceVariable("datasource").label("Data source")
                        .type("prometheus")))
    for name in d.variables:
        b.with_variable(_variable(name, spec))

    next_id = 1
    for row in d.rows(spec):
        b.with_row(dash_b.Row(row.title).id(next_id))
        next_id += 1
        for p in row.panels:
            b.with_panel(_panel(p, next_id, spec))
            next_id += 1

    model = b.build()
    # The SDK writes interval-variable fields (auto, auto_min, auto_count) on every
    # variable; the published schema (and Grafana) only know them on interval variables.
    for v in (model.templating.list_val if model.templating else None) or []:
        if v.type_val != dash_m.VariableType.INTERVAL:
            v.auto = v.auto_min = v.auto_count = None
    return model


def _encode(model: dash_m.Dashboard) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(model) + "\n"
