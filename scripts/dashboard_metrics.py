#!/usr/bin/env python3
"""Every metric the Grafana dashboard and the alerts query is one the
binaries export.

The queries are parsed by promql-parser (the Rust `promql-parser` crate's
Python binding, which GreptimeDB uses) and the scrapes by the official
Prometheus Python client's OpenMetrics parser: neither is ours. A selector
names a metric the scrapes do not have, or filters on a label the metric's
samples never carry, and the check fails, naming the panel or alert.

    dashboard_metrics.py --dashboard docs/grafana/meshguard.json \
        [--rules rendered-chart.yaml] --scrape agent.txt --scrape operator.txt

Prints a JSON report; exits 1 when something is missing, 2 on bad input.
"""

import argparse
import json
import re
import sys

import promql_parser
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families

# Grafana's variables, as Grafana substitutes them before the query leaves:
# ranges become durations, the multi-value `instance` a regex.
RANGES = re.compile(r"\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}")
VARIABLES = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
# Labels Prometheus attaches at scrape time, never in /metrics.
TARGET_LABELS = {"instance", "job", "__name__"}
# The sample names a family of each type exposes (OpenMetrics).
SUFFIXES = {
    "counter": ["_total", "_created"],
    "gauge": [""],
    "histogram": ["_bucket", "_sum", "_count", "_created"],
    "summary": ["", "_sum", "_count", "_created"],
    "info": ["_info"],
    "stateset": [""],
    "unknown": [""],
}


def grafana_exprs(dashboard):
    """(where, expr) for every panel target and query variable."""

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f'panel "{panel.get("title")}" ({target.get("refId")})', target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query":
            text = query.get("query") if isinstance(query, dict) else query
            match = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_]+\)\s*", text or "")
            if not match:
                raise ValueError(f"variable {variable.get('name')}: {text!r} is not label_values(<selector>, <label>)")
            yield f'variable "{variable.get("name")}"', match.group(1)


def rule_exprs(path):
    """(where, expr) for every rule of every PrometheusRule in a rendered chart."""
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc or doc.get("kind") != "PrometheusRule":
                continue
            for group in doc["spec"]["groups"]:
                for rule in group["rules"]:
                    name = rule.get("alert") or rule.get("record")
                    yield f'rule "{name}"', rule["expr"]


def substitute(expr):
    expr = RANGES.sub("5m", expr)
    return VARIABLES.sub(".*", expr)


def selectors(node):
    """Every vector selector in a parsed expression."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node
    elif isinstance(node, promql_parser.MatrixSelector):
        yield node.vector_selector
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from selectors(node.lhs)
        yield from selectors(node.rhs)
    elif isinstance(node, promql_parser.AggregateExpr):
        yield from selectors(node.expr)
        if node.param is not None:
            yield from selectors(node.param)
    elif isinstance(node, promql_parser.Call):
        for arg in node.args:
            yield from selectors(arg)
    elif isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
        yield from selectors(node.expr)
    elif isinstance(node, (promql_parser.NumberLiteral, promql_parser.StringLiteral)):
        return
    else:
        raise ValueError(f"unexpected PromQL node {type(node).__name__}")


def exported(paths):
    """{sample name: set of label names seen (None: the family has no samples yet)}."""
    names = {}
    for path in paths:
        with open(path) as f:
            text = f.read()
        if not text.rstrip().endswith("# EOF"):
            text = text.rstrip("\n") + "\n# EOF\n"
        for family in text_string_to_metric_families(text):
            for suffix in SUFFIXES.get(family.type, [""]):
                names.setdefault(family.name + suffix, None)
            for sample in family.samples:
                seen = names.get(sample.name) or set()
                names[sample.name] = seen | set(sample.labels)
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--rules", help="a rendered chart (YAML stream) holding PrometheusRules")
    parser.add_argument("--scrape", action="append", required=True, help="a /metrics body")
    args = parser.parse_args()

    try:
        with open(args.dashboard) as f:
            queries = list(grafana_exprs(json.load(f)))
        if args.rules:
            queries += list(rule_exprs(args.rules))
        names = exported(args.scrape)
    except (OSError, ValueError, KeyError, yaml.YAMLError) as e:
        print(f"dashboard_metrics.py: {e}", file=sys.stderr)
        return 2

    problems, used, unchecked = [], set(), set()
    for where, expr in queries:
        try:
            tree = promql_parser.parse(substitute(expr))
        except Exception as e:  # the binding raises a bare Exception on syntax errors
            problems.append(f"{where}: {expr!r} does not parse: {e}")
            continue
        found = list(selectors(tree))
        if not found:
            problems.append(f"{where}: {expr!r} queries no metric")
        for selector in found:
            name = selector.name
            if not name:
                problems.append(f"{where}: a selector without a metric name in {expr!r}")
                continue
            used.add(name)
            if name not in names:
                problems.append(f"{where}: {name} is not exported by any scraped binary")
                continue
            labels = names[name]
            for matcher in selector.matchers.matchers:
                if matcher.name in TARGET_LABELS:
                    continue
                if labels is None:
                    unchecked.add(f"{name}{{{matcher.name}}}")
                elif matcher.name not in labels:
                    problems.append(
                        f"{where}: {name} has no label {matcher.name!r} (its samples carry {sorted(labels)})"
                    )
    report = {
        "queries": len(queries),
        "metrics": sorted(used),
        "labelsUnchecked": sorted(unchecked),
        "problems": problems,
    }
    print(json.dumps(report, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
