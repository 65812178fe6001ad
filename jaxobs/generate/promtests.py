"""``promtool test rules`` files generated from the same model as the rules.

They prove, with Prometheus' own evaluator, that every alert fires when it
should and stays silent when it should not: the SLO cases are time-shaped
traffic evaluated every 5 minutes (:mod:`jaxobs.generate.slo_tests`), the
resource cases one firing and one silent input per alert
(:mod:`jaxobs.generate.resource_tests`).
"""

from __future__ import annotations

from typing import Any

from jaxobs.generate.render import dump_yaml
from jaxobs.generate.resource_tests import resource_cases
from jaxobs.generate.rules import rule_groups
from jaxobs.generate.slo_tests import EVAL_S, slo_cases
from jaxobs.generate.testcase import Case, Check, instance
from jaxobs.slo import duration
from jaxobs.slo.model import Spec

__all__ = ["Case", "Check", "build_tests", "instance", "resource_cases", "slo_cases"]

RULES_FROM_TESTS = "../jaxobs.rules.yaml"


def _case_yaml(case: Case) -> dict[str, Any]:
    return {
        "name": case.name,
        "interval": case.interval,
        "input_series": [{"series": s, "values": v} for s, v in case.series],
        "promql_expr_test": [
            {"expr": chk.expr, "eval_time": chk.eval_time,
             "exp_samples": [{"labels": labels, "value": value} for labels, value in chk.samples]}
            for chk in case.checks],
    }


def _test_file(cases: list[Case], source: str, what: str, interval: str,
               order: list[str]) -> str:
    # promtool evaluates groups in no fixed order unless told: alerts must read the
    # recordings of the same evaluation, as they do in the rule file's order.
    doc = {"rule_files": [RULES_FROM_TESTS], "evaluation_interval": interval,
           "group_eval_order": order, "tests": [_case_yaml(x) for x in cases]}
    return dump_yaml(doc, source, f"{what}\nRun: promtool test rules alerts/tests/*.yaml")


def build_tests(spec: Spec, source: str) -> dict[str, str]:
    """``{"alerts/tests/<service>.<slo|resources>.test.yaml": text}``."""
    out: dict[str, str] = {}
    order = [group["name"] for group in rule_groups(spec)]
    for service in spec.services:
        cases = [case for slo in service.slos for case in slo_cases(service, slo, spec.outputs)]
        if cases:
            out[f"alerts/tests/{service.name}.slo.test.yaml"] = _test_file(
                cases, source, f"SLO alerts of {service.name}: bursts page then clear, slow "
                               f"burns ticket, zero traffic is silent, missing data alerts.",
                duration.canonical(EVAL_S), order)
        out[f"alerts/tests/{service.name}.resources.test.yaml"] = _test_file(
            resource_cases(service, spec.resources, spec.outputs), source,
            f"Resource alerts of {service.name}: each fires on its input and stays silent "
            f"otherwise.", "1m", order)
    return out
