"""A small PromQL scanner: which metric names does an expression select?

Not a full parser: it drops string literals, label matchers, range/offset durations, grouping label
lists and Grafana variables, and keeps the identifiers that are not function names or keywords.
"""

from __future__ import annotations

import re

KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless"}
    | {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "group"}
    | {"count_values", "inf", "nan", "atan2", "start", "end"}
)

# Grafana's built-in interval variables, replaced by a duration so expressions stay valid PromQL.
GRAFANA_DURATIONS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${__rate_interval}": "5m",
    "${__interval}": "1m",
    "${__range}": "1h",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(\s*\()?")


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana variables: interval ones by durations, others (e.g. $la_code) by '.*'."""
    for name, value in GRAFANA_DURATIONS.items():
        expr = expr.replace(name, value)
    return _VARIABLE.sub(".*", expr)


def metric_names(expr: str) -> set[str]:
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub(r"\1", text)
    text = _OFFSET.sub("", text)
    text = _VARIABLE.sub("", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name in KEYWORDS:
            continue
        names.add(name)
    return names
