"""What SigNoz v0.119.0 accepts, as a Python checker of our SigNoz JSON.

Mirrors SigNoz's own code at the tag ``v0.119.0`` (github.com/SigNoz/signoz; the Go/TS paths
below are relative to that repository). Each check names the function it mirrors. Where SigNoz
writes the message itself it is copied verbatim, so a failure reads like SigNoz's 400 answer;
the others say what Go's JSON decoder or text/template would reject.

Alert rules: ``POST /api/v1/rules`` (pkg/query-service/app/http_handler.go: createRule) ->
``Manager.CreateRule`` (pkg/query-service/rules/manager.go) = ``json.Unmarshal`` into
``ruletypes.PostableRule`` (its UnmarshalJSON runs processRuleDefaults and validate) and then
``PostableRule.Validate``; the rule task is built by ``NewBaseRule``
(pkg/query-service/rules/base_rule.go), which needs thresholds and an evaluation, and
``NewPromRule`` (pkg/query-service/rules/prom_rule.go: getPqlQuery), which needs a PromQL
query named like the selected query. :func:`check_rule`.

Annotation and label templates: pkg/types/ruletypes/templates.go (preprocessTemplate,
AlertTemplateData) and pkg/query-service/rules/prom_rule.go (Eval: the label map is the
result series' labels plus threshold.name and severity, from
pkg/types/ruletypes/threshold.go: PrepareSampleLabelsForRule). :func:`expand_template`.

Dashboards: the import path (pkg/modules/dashboard/impldashboard/handler.go: Create) keeps any
JSON object and migrates it with pkg/transition/migrate_dashboard.go unless its version is
"v5"; what the panels may query is the frontend's (frontend/src/container/NewWidget/utils.ts:
PANEL_TYPE_TO_QUERY_TYPES; QuerySection/index.tsx switches a table or pie off PromQL), and a
builder widget becomes a v5 query envelope in the browser
(frontend/src/api/v5/queryRange/prepareQueryRangePayloadV5.ts), which the query service
validates (pkg/types/querybuildertypes/querybuildertypesv5/validation.go). :func:`check_dashboard`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

SIGNOZ_TAG = "v0.119.0"

# -- shared value types ----------------------------------------------------------------------

# pkg/valuer/string.go: NewString lower-cases and trims every enum-like value before comparing.


def _enum(value: Any) -> str:
    return value.strip().lower() if isinstance(value, str) else ""


# time.ParseDuration (pkg/valuer/text_duration.go: TextDuration.UnmarshalJSON takes a Go
# duration string, or a number of nanoseconds).
_DURATION = re.compile(r"^[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$|^[-+]?0$")
_UNIT_NS = {"ns": 1, "us": 1e3, "µs": 1e3, "μs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def duration_ns(value: Any) -> float | None:
    """A TextDuration in nanoseconds, or None where Go's decoder fails."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str) or not _DURATION.match(value):
        return None
    sign = -1 if value.startswith("-") else 1
    total = sum(float(n) * _UNIT_NS[u] for n, u in re.findall(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)", value))
    return sign * total


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- pkg/types/ruletypes -----------------------------------------------------------------------

# compare.go: CompareOperator.Validate; match.go: MatchType.Validate; rule_type.go; api_params.go.
COMPARE_OPERATORS = {
    "1", "above", ">", "2", "below", "<", "3", "equal", "eq", "=", "4", "not_equal", "not_eq", "!=",
    "5", "above_or_equal", "above_or_eq", ">=", "6", "below_or_equal", "below_or_eq", "<=", "7", "outside_bounds",
}
MATCH_TYPES = {"1", "at_least_once", "2", "all_the_times", "3", "on_average", "avg", "4", "in_total", "sum",
               "5", "last"}
RULE_TYPES = {"threshold_rule", "promql_rule", "anomaly_rule"}
ALERT_TYPES = {"METRIC_BASED_ALERT", "TRACES_BASED_ALERT", "LOGS_BASED_ALERT", "EXCEPTIONS_BASED_ALERT"}
SCHEMA_VERSIONS = {"v1", "v2alpha1"}  # DefaultSchemaVersion, SchemaVersionV2Alpha1
ALERT_STATES = {"firing", "nodata"}  # NotificationSettings.UnmarshalJSON: StateFiring, StateNoData
# querybuildertypesv5/query_type.go + req.go (QueryEnvelope.UnmarshalJSON)
ENVELOPE_TYPES = {"builder_query", "builder_sub_query", "builder_formula", "builder_join",
                  "builder_trace_operator", "promql", "clickhouse_sql"}
# querybuildertypesv5/prom_query.go: PromQuery; decoded with DisallowUnknownFields
# (json_decoder.go: UnmarshalJSONWithContext), as is the envelope itself ({type, spec}).
PROM_QUERY_FIELDS = {"name", "query", "disabled", "step", "stats", "legend"}
ENVELOPE_FIELDS = {"type", "spec"}

# The PostableRule fields and their JSON types (api_params.go); Go's json.Unmarshal fails on
# a type mismatch and ignores unknown fields.
_RULE_FIELDS: dict[str, tuple[type, ...]] = {
    "alert": (str,), "alertType": (str,), "description": (str,), "ruleType": (str,), "condition": (dict,),
    "labels": (dict,), "annotations": (dict,), "disabled": (bool,), "source": (str,), "preferredChannels": (list,),
    "version": (str,), "evaluation": (dict,), "schemaVersion": (str,), "notificationSettings": (dict,),
}
_CONDITION_FIELDS: dict[str, tuple[type, ...]] = {
    "compositeQuery": (dict,), "op": (str,), "alertOnAbsent": (bool,), "absentFor": (int,), "matchType": (str,),
    "targetUnit": (str,), "algorithm": (str,), "selectedQueryName": (str,), "requireMinPoints": (bool,),
    "requiredNumPoints": (int,), "thresholds": (dict,),
}


def _label_name_ok(name: str) -> bool:
    """api_params.go: isValidLabelName (letters, '_', '.', digits after the first)."""
    return bool(name) and all(c.isascii() and (c.isalpha() or c in "_." or (c.isdigit() and i > 0))
                              for i, c in enumerate(name))


def _types(obj: dict, fields: dict[str, tuple[type, ...]], where: str) -> list[str]:
    errs = []
    for key, types in fields.items():
        if key in obj and obj[key] is not None and not isinstance(obj[key], types):
            errs.append(f"failed to parse json: {where}{key}: cannot unmarshal {type(obj[key]).__name__}")
        if int in types and isinstance(obj.get(key), bool):
            errs.append(f"failed to parse json: {where}{key}: cannot unmarshal bool")
    return errs


def _check_envelope(envelope: Any, index: int) -> list[str]:
    """req.go: QueryEnvelope.UnmarshalJSON, then validation.go: validateQueryEnvelope."""
    if not isinstance(envelope, dict):
        return [f"condition.compositeQuery.queries[{index}]: not an object"]
    unknown = sorted(set(envelope) - ENVELOPE_FIELDS)
    if unknown:
        return [f'unknown field "{unknown[0]}"']
    kind = _enum(envelope.get("type"))
    if kind not in ENVELOPE_TYPES:
        return [f'unknown query type "{kind}"']
    spec = envelope.get("spec")
    if kind != "promql":
        return []  # we only write PromQL rules; the other kinds have their own decoders
    if not isinstance(spec, dict):
        return ["invalid PromQL spec"]
    unknown = sorted(set(spec) - PROM_QUERY_FIELDS)
    if unknown:
        return [f'unknown field "{unknown[0]}" in PromQL spec']
    errs = _types(spec, {"name": (str,), "query": (str,), "disabled": (bool,), "stats": (bool,), "legend": (str,)}, "spec.")
    if "step" in spec and spec["step"] is not None and duration_ns(spec["step"]) is None:
        errs.append("invalid step")
    if not spec.get("query"):
        errs.append(f"invalid PromQL query '{spec.get('name', '')}': PromQL query is required")
    return errs


def _threshold_errors(thresholds: Any) -> list[str]:
    """threshold.go: RuleThresholdData.UnmarshalJSON -> BasicRuleThresholds.Validate."""
    if not isinstance(thresholds, dict):
        return ["failed to unmarshal raw rule threshold json"]
    if _enum(thresholds.get("kind")) != "basic":
        return ["unknown threshold kind"]
    spec = thresholds.get("spec")
    if not isinstance(spec, list):
        return ["failed to unmarshal rule threshold spec"]
    if not spec:
        return ["condition.thresholds.spec: must have at least one threshold"]
    errs = []
    for t in spec:
        if not isinstance(t, dict):
            errs.append("failed to unmarshal rule threshold spec")
            continue
        if not isinstance(t.get("name"), str) or not t.get("name"):
            errs.append("threshold name cannot be empty")
        if not _is_number(t.get("target")):
            errs.append("target value cannot be nil")
        if "recoveryTarget" in t and t["recoveryTarget"] is not None and not _is_number(t["recoveryTarget"]):
            errs.append("failed to unmarshal rule threshold spec")
        if _enum(t.get("op")) not in COMPARE_OPERATORS:
            errs.append(f'condition.op: unsupported value "{_enum(t.get("op"))}"')
        if _enum(t.get("matchType")) not in MATCH_TYPES:
            errs.append(f'condition.matchType: unsupported value "{_enum(t.get("matchType"))}"')
        if "channels" in t and not isinstance(t["channels"], (list, type(None))):
            errs.append("failed to unmarshal rule threshold spec")
    return errs


def _evaluation_errors(evaluation: Any) -> list[str]:
    """evaluation.go: EvaluationEnvelope.UnmarshalJSON (rolling: RollingWindow.Validate)."""
    if not isinstance(evaluation, dict):
        return ["failed to unmarshal evaluation"]
    kind = _enum(evaluation.get("kind"))
    spec = evaluation.get("spec")
    if kind == "rolling":
        if not isinstance(spec, dict):
            return ["failed to unmarshal rolling window"]
        for key in ("evalWindow", "frequency"):
            ns = duration_ns(spec.get(key, 0))
            if ns is None:
                return ["failed to unmarshal rolling window: invalid duration"]
            if ns <= 0:
                return [f"failed to validate rolling window: {key} must be greater than zero"]
        return []
    if kind == "cumulative":
        return []  # not written by us; its schedule checks are in CumulativeSchedule.Validate
    return ["unknown evaluation kind"]


def _notification_errors(settings: Any) -> list[str]:
    """api_params.go: NotificationSettings.UnmarshalJSON and validateV2Alpha1's renotify check."""
    if not isinstance(settings, dict):
        return ["notificationSettings: cannot unmarshal"]
    errs = []
    renotify = settings.get("renotify") or {}
    if not isinstance(renotify, dict):
        return ["notificationSettings.renotify: cannot unmarshal"]
    for state in renotify.get("alertStates") or []:
        if _enum(state) not in ALERT_STATES:
            errs.append(f"invalid alert state: {state}")
    interval = duration_ns(renotify.get("interval", 0))
    if interval is None:
        errs.append("notificationSettings.renotify.interval: invalid duration")
    elif renotify.get("enabled") and interval <= 0:
        errs.append("notificationSettings.renotify.interval: must be a positive duration when renotify is enabled")
    if not isinstance(settings.get("groupBy", []), list):
        errs.append("notificationSettings.groupBy: cannot unmarshal")
    return errs


def check_rule(rule: Any) -> list[str]:
    """Every reason SigNoz v0.119.0 would answer 400 to ``POST /api/v1/rules`` with this body,
    or fail to start the rule; [] = accepted."""
    if not isinstance(rule, dict):
        return ["failed to parse json: not an object"]
    errs = _types(rule, _RULE_FIELDS, "")
    if errs:
        return errs
    condition = rule.get("condition")
    if condition is None:
        return ["condition: field is required"]  # validate() and Validate()
    errs += _types(condition, _CONDITION_FIELDS, "condition.")
    if "target" in condition and condition["target"] is not None and not _is_number(condition["target"]):
        errs.append("failed to parse json: condition.target: cannot unmarshal")
    composite = condition.get("compositeQuery")
    if isinstance(composite, dict) and "queries" in composite and not isinstance(composite["queries"], (list, type(None))):
        errs.append("failed to parse json: condition.compositeQuery.queries: cannot unmarshal")
    if errs:
        return errs
    for key in ("evalWindow", "frequency"):
        if key in rule and duration_ns(rule[key]) is None:
            errs.append(f"failed to parse json: {key}: invalid duration")
    if "thresholds" in condition and condition["thresholds"] is not None:
        errs += _threshold_errors(condition["thresholds"])
    if "evaluation" in rule and rule["evaluation"] is not None:
        errs += _evaluation_errors(rule["evaluation"])
    if "notificationSettings" in rule and rule["notificationSettings"] is not None:
        errs += _notification_errors(rule["notificationSettings"])
    queries = (composite.get("queries") or []) if isinstance(composite, dict) else []
    for i, envelope in enumerate(queries):
        errs += _check_envelope(envelope, i)
    if errs:
        return errs  # UnmarshalJSON stops at the first decoding error

    # processRuleDefaults: a missing schemaVersion is v1, which derives thresholds/evaluation
    schema = rule.get("schemaVersion") or "v1"
    query_type = _enum(composite.get("queryType")) if isinstance(composite, dict) else ""
    rule_type = _enum(rule.get("ruleType"))
    if query_type == "promql":
        rule_type = "promql_rule"
    elif query_type == "builder" and not rule_type:
        rule_type = "threshold_rule"

    # validate() (UnmarshalJSON) and Validate() (CreateRule)
    if not rule.get("alert"):
        errs.append("alert: field is required")
    if rule.get("version") != "v5":
        errs.append(f'version: only v5 is supported, got "{rule.get("version", "")}"')
    if rule.get("alertType") and rule["alertType"] not in ALERT_TYPES:
        errs.append(f'alertType: unsupported value "{rule["alertType"]}"')
    if rule_type and rule_type not in RULE_TYPES:
        errs.append(f'ruleType: unsupported value "{rule_type}"; must be one of threshold_rule, promql_rule, anomaly_rule')
    if not isinstance(composite, dict):
        errs.append("condition.compositeQuery: field is required")
    elif not queries:
        errs.append("condition.compositeQuery.queries: must have at least one query")
    names = [e.get("spec", {}).get("name") for e in queries if isinstance(e, dict) and isinstance(e.get("spec"), dict)]
    selected = condition.get("selectedQueryName", "")
    if selected and queries and selected not in names:
        errs.append(f'condition.selectedQueryName: "{selected}" does not match any query in compositeQuery')
    if condition.get("requireMinPoints") and (condition.get("requiredNumPoints") or 0) <= 0:
        errs.append("condition.requiredNumPoints: must be greater than 0 when requireMinPoints is enabled")
    if schema == "v1":  # validateV1
        if not _is_number(condition.get("target")):
            errs.append('condition.target: field is required for schemaVersion "v1"')
        if not _enum(condition.get("op")):
            errs.append('condition.op: field is required for schemaVersion "v1"')
        elif _enum(condition["op"]) not in COMPARE_OPERATORS:
            errs.append(f'condition.op: unsupported value "{_enum(condition["op"])}"')
        if not _enum(condition.get("matchType")):
            errs.append('condition.matchType: field is required for schemaVersion "v1"')
        elif _enum(condition["matchType"]) not in MATCH_TYPES:
            errs.append(f'condition.matchType: unsupported value "{_enum(condition["matchType"])}"')
    elif schema == "v2alpha1":  # validateV2Alpha1
        if condition.get("thresholds") is None:
            errs.append('condition.thresholds: field is required for schemaVersion "v2alpha1"')
        if rule.get("evaluation") is None:
            errs.append('evaluation: field is required for schemaVersion "v2alpha1"')
        if rule.get("notificationSettings") is None:
            errs.append('notificationSettings: field is required for schemaVersion "v2alpha1"')
    else:
        errs.append(f'schemaVersion: unsupported value "{schema}"; must be one of "v1", "v2alpha1"')
    for key, value in (rule.get("labels") or {}).items():
        if not _label_name_ok(key):
            errs.append(f"invalid label name: {key}")
        if not isinstance(value, str):
            errs.append(f"failed to parse json: labels.{key}: cannot unmarshal")
    for key, value in (rule.get("annotations") or {}).items():
        if not _label_name_ok(key):
            errs.append(f"invalid annotation name: {key}")
        if not isinstance(value, str):
            errs.append(f"failed to parse json: annotations.{key}: cannot unmarshal")
    for text in [*(rule.get("labels") or {}).values(), *(rule.get("annotations") or {}).values()]:
        if isinstance(text, str) and (problem := template_parse_error(text)):
            errs.append(f"template parsing error: {problem}")

    # NewPromRule: getPqlQuery needs an enabled-or-not PromQL envelope named like the selected
    # query (BaseRule.SelectedQuery: selectedQueryName, else F1, else the highest name).
    if not errs and rule_type == "promql_rule":
        enabled = sorted(n for e, n in zip(queries, names, strict=True) if not e["spec"].get("disabled"))
        wanted = selected or ("F1" if "F1" in enabled else (enabled[-1] if enabled else ""))
        if not any(_enum(e.get("type")) == "promql" and e["spec"].get("name") == wanted for e in queries):
            errs.append("invalid promql rule setup")
    return errs


# -- templates (pkg/types/ruletypes/templates.go) ----------------------------------------------

_DOLLAR = re.compile(r"({{.*?}})|(\$(\w+(?:\.\w+)*))")
_DOT_LABELS = re.compile(r"{{\s*\.Labels\.([a-zA-Z0-9_.]+)(.*?)}}")
_VARIABLE = re.compile(r"{{\s*\$\s*([a-zA-Z0-9_.]+)\s*}}")
_ACTION = re.compile(r"{{(.*?)}}", re.S)
_INDEX = re.compile(r'^\s*index\s+(?:\.Labels|\$labels)\s+"([^"]*)"\s*$')
_DEFS = "{{$labels := .Labels}}{{$value := .Value}}{{$threshold := .Threshold}}"


def preprocess_template(text: str) -> str:
    """TemplateExpander.preprocessTemplate: SigNoz's own variable syntax -> Go template."""

    def dollar(match: re.Match[str]) -> str:
        return match.group(0) if match.group(0).startswith("{{") else '{{index $labels "' + match.group(0)[1:] + '"}}'

    text = _DOLLAR.sub(dollar, text)
    text = _DOT_LABELS.sub(lambda m: '{{index .Labels "' + m.group(1) + '"' + m.group(2) + "}}", text)

    def variable(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole.startswith("{{$threshold}}") or whole.startswith("{{$value}}"):
            return whole
        name = whole.removeprefix("{{$").removesuffix("}}")
        return '{{index .Labels "' + name + '"}}'

    return _VARIABLE.sub(variable, text)


def normalize_label_name(name: str) -> str:
    """templates.go: NormalizeLabelName (what AlertTemplateData adds next to every label)."""
    out = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    if out and not (out[0].isalpha() or out[0] == "_"):
        out = "_" + out
    return out


def template_data_labels(labels: dict[str, str]) -> dict[str, str]:
    """templates.go: AlertTemplateData's Labels: each label under its name and its normalized name."""
    out: dict[str, str] = {}
    for key, value in labels.items():
        out[key] = value
        out[normalize_label_name(key)] = value
    return out


def _template_actions(text: str) -> list[str]:
    return _ACTION.findall(preprocess_template(_DEFS + text))


def template_parse_error(text: str) -> str:
    """Go text/template would fail to parse, in the cases our templates can hit: unbalanced
    delimiters and actions outside the subset :func:`expand_template` evaluates."""
    body = preprocess_template(_DEFS + text)
    if body.count("{{") != body.count("}}"):
        return "unbalanced {{ }}"
    for action in _template_actions(text):
        if not _known_action(action):
            return f"unsupported action {{{{{action}}}}}"
    return ""


def _known_action(action: str) -> bool:
    a = action.strip()
    return bool(_INDEX.match(a)) or a in {"$value", "$threshold", "$labels := .Labels", "$value := .Value",
                                          "$threshold := .Threshold"}


def label_references(text: str) -> list[str]:
    """The label keys a template looks up once SigNoz has rewritten it."""
    refs = []
    for action in _template_actions(text):
        if found := _INDEX.match(action.strip()):
            refs.append(found.group(1))
    return refs


def expand_template(text: str, labels: dict[str, str], value: str = "1", threshold: str = "0") -> str:
    """TemplateExpander.Expand for the subset of Go templates that alert texts use: label
    lookups (``missingkey=zero``: an absent label renders as ""), $value, $threshold."""
    data = template_data_labels(labels)
    body = preprocess_template(_DEFS + text)

    def action(match: re.Match[str]) -> str:
        a = match.group(1).strip()
        if found := _INDEX.match(a):
            return data.get(found.group(1), "")
        if a == "$value":
            return value
        if a == "$threshold":
            return threshold
        if a in {"$labels := .Labels", "$value := .Value", "$threshold := .Threshold"}:
            return ""
        raise ValueError(f"unsupported template action {{{{{a}}}}}")

    return _ACTION.sub(action, body)


def alert_labels(series_labels: Iterable[str], threshold_name: str) -> dict[str, str]:
    """prom_rule.go Eval: the template's label map = the result series' labels plus
    threshold.name and severity (threshold.go: PrepareSampleLabelsForRule), here with
    placeholder values ``<name>``."""
    labels = {name: f"<{name}>" for name in series_labels}
    labels["threshold.name"] = threshold_name
    labels["severity"] = threshold_name.lower()
    return labels


# -- dashboards ----------------------------------------------------------------------------

# frontend/src/constants/queryBuilder.ts: PANEL_TYPES (+ PANEL_GROUP_TYPES.ROW)
PANEL_TYPES = {"graph", "value", "table", "list", "trace", "bar", "pie", "histogram"}
# frontend/src/container/NewWidget/utils.ts: PANEL_TYPE_TO_QUERY_TYPES
PANEL_QUERY_TYPES = {
    "graph": {"builder", "clickhouse_sql", "promql"},
    "table": {"builder", "clickhouse_sql"},
    "value": {"builder", "clickhouse_sql", "promql"},
    "list": {"builder"},
    "trace": {"builder", "clickhouse_sql", "promql"},
    "bar": {"builder", "clickhouse_sql", "promql"},
    "pie": {"builder", "clickhouse_sql"},
    "histogram": {"builder", "clickhouse_sql", "promql"},
}
# frontend/src/api/v5/queryRange/prepareQueryRangePayloadV5.ts: mapPanelTypeToRequestType
REQUEST_TYPES = {"graph": "time_series", "bar": "time_series", "table": "scalar", "pie": "scalar",
                 "value": "scalar", "trace": "trace", "list": "raw", "histogram": "distribution"}
# frontend/src/container/NewWidget/RightContainer/timeItems.ts
TIME_PREFERENCES = {"GLOBAL_TIME", "LAST_5_MIN", "LAST_15_MIN", "LAST_30_MIN", "LAST_1_HR", "LAST_6_HR",
                    "LAST_1_DAY", "LAST_3_DAYS", "LAST_1_WEEK", "LAST_1_MONTH"}
# pkg/types/metrictypes/metrictypes.go: TimeAggregation / SpaceAggregation Enum; ReduceTo
# (querybuildertypesv5/builder_elements.go)
TIME_AGGREGATIONS = {"", "latest", "sum", "avg", "min", "max", "count", "count_distinct", "rate", "increase"}
SPACE_AGGREGATIONS = {"sum", "avg", "min", "max", "count", "p50", "p75", "p90", "p95", "p99"}
REDUCE_TO = {"", "sum", "count", "avg", "min", "max", "last", "median"}
# frontend dashboard variable types (what our generator writes: QUERY and TEXTBOX)
VARIABLE_TYPES = {"QUERY", "TEXTBOX", "CUSTOM", "DYNAMIC"}
# govaluate identifiers in a formula (validation.go: formula.Validate parses the expression)
_FORMULA = re.compile(r"^[A-Z][A-Z0-9]*(?:\s*[-+*/]\s*(?:[A-Z][A-Z0-9]*|\d+(?:\.\d+)?))*$")


def builder_envelopes(widget: dict) -> list[dict]:
    """The v5 query envelopes the browser sends for a builder widget (prepareQueryRangePayloadV5:
    convertBuilderQueriesToV5 with createBaseSpec and createAggregation, formulas as
    builder_formula), for the fields we use."""
    panel = widget["panelTypes"]
    builder = widget["query"]["builder"]
    out = []
    for q in builder.get("queryData", []):
        agg = (q.get("aggregations") or [{}])[0]
        keep_reduce = q.get("dataSource") == "metrics" and panel in {"table", "pie", "value"}
        spec: dict[str, Any] = {
            "name": q.get("queryName"),
            "signal": "metrics" if q.get("dataSource") not in {"traces", "logs"} else q["dataSource"],
            "source": q.get("source") or "",
            "stepInterval": q.get("stepInterval") or None,
            "disabled": q.get("disabled"),
            "filter": {"expression": (q.get("filter") or {}).get("expression", "")},
            "aggregations": [{
                "metricName": agg.get("metricName") or (q.get("aggregateAttribute") or {}).get("key"),
                "temporality": agg.get("temporality") or q.get("temporality"),
                "timeAggregation": agg.get("timeAggregation") or q.get("timeAggregation"),
                "spaceAggregation": agg.get("spaceAggregation") or q.get("spaceAggregation"),
                **({"reduceTo": agg.get("reduceTo") or q.get("reduceTo")} if keep_reduce else {}),
            }],
        }
        if q.get("groupBy"):
            spec["groupBy"] = [{"name": g.get("key"), "fieldDataType": g.get("dataType") or "",
                                "fieldContext": g.get("type") or ""} for g in q["groupBy"]]
        limit = q.get("limit") or (q.get("pageSize") if panel in {"table", "list"} else None)
        if limit:
            spec["limit"] = limit
        if q.get("orderBy"):
            spec["order"] = [{"key": {"name": o.get("columnName")}, "direction": o.get("order")} for o in q["orderBy"]]
        if q.get("legend"):
            spec["legend"] = q["legend"]
        out.append({"type": "builder_query", "spec": spec})
    for f in builder.get("queryFormulas", []):
        spec = {"name": f.get("queryName"), "expression": f.get("expression") or "", "disabled": f.get("disabled")}
        if f.get("legend"):
            spec["legend"] = f["legend"]
        out.append({"type": "builder_formula", "spec": spec})
    return out


def query_range_request(widget: dict, variables: dict[str, str]) -> dict:
    """The ``POST /api/v5/query_range`` body of a builder widget (prepareQueryRangePayloadV5),
    with fixed times: what pkg/types/querybuildertypes/querybuildertypesv5 validates."""
    return {
        "schemaVersion": "v1",
        "start": 1_700_000_000_000,
        "end": 1_700_003_600_000,
        "requestType": REQUEST_TYPES[widget["panelTypes"]],
        "compositeQuery": {"queries": builder_envelopes(widget)},
        "formatOptions": {"formatTableResultForUI": widget["panelTypes"] == "table", "fillGaps": False},
        "variables": {name: {"type": "query", "value": value} for name, value in variables.items()},
    }


def _check_builder_envelope(envelope: dict, names: set[str]) -> list[str]:
    """validation.go: QueryBuilderQuery.Validate (metrics) and QueryBuilderFormula.Validate."""
    spec = envelope["spec"]
    name = spec.get("name") or "?"
    if envelope["type"] == "builder_formula":
        expression = (spec.get("expression") or "").strip()
        if not spec.get("name", "").strip():
            return ["formula name cannot be blank"]
        if not expression:
            return ["formula expression cannot be blank"]
        if not _FORMULA.match(expression):
            return [f'failed to parse expression for formula query "{name}"']
        # Stricter than Validate, which only parses the expression: a formula over a query the
        # widget lacks is accepted there and has nothing to compute.
        unknown = sorted(set(re.findall(r"[A-Z][A-Z0-9]*", expression)) - names)
        return [f"formula {name}: unknown query {u}" for u in unknown]
    errs = []
    if spec.get("signal") != "metrics":
        errs.append(f"query '{name}': we write metric queries only")
    aggregations = spec.get("aggregations") or []
    if not aggregations:
        return [f"invalid query '{name}': at least one aggregation is required"]
    for i, agg in enumerate(aggregations, start=1):
        if not agg.get("metricName"):
            errs.append(f"invalid query '{name}': metric name is required for aggregation #{i} in query '{name}'")
        if _enum(agg.get("spaceAggregation")) not in SPACE_AGGREGATIONS:
            errs.append(f"invalid query '{name}': invalid space aggregation, should be one of the following: "
                        "[`sum`, `avg`, `min`, `max`, `count`, `p50`, `p75`, `p90`, `p95`, `p99`]")
        if _enum(agg.get("timeAggregation")) not in TIME_AGGREGATIONS:
            errs.append(f"invalid query '{name}': unknown time aggregation {agg.get('timeAggregation')!r}")
        if _enum(agg.get("reduceTo")) not in REDUCE_TO:
            errs.append(f"invalid query '{name}': unknown reduceTo {agg.get('reduceTo')!r}")
    for i, group in enumerate(spec.get("groupBy") or []):
        if not group.get("name"):
            errs.append(f"invalid query '{name}': invalid empty key name for group by at index {i}")
    limit = spec.get("limit") or 0
    if not 0 <= limit <= 10000:
        errs.append(f"invalid query '{name}': limit out of range")
    for order in spec.get("order") or []:
        if _enum(order.get("direction")) not in {"asc", "desc"}:
            errs.append(f"invalid query '{name}': invalid direction")
    if spec.get("stepInterval") is not None and duration_ns(spec["stepInterval"]) is None:
        errs.append(f"invalid query '{name}': invalid step")
    return errs


def _check_widget(widget: dict, variable_names: set[str]) -> list[str]:
    title = widget.get("title", widget.get("id"))
    panel = widget.get("panelTypes")
    if panel == "row":
        return []
    if panel not in PANEL_TYPES:
        return [f"{title}: unknown panel type {panel!r}"]
    query = widget.get("query") or {}
    query_type = query.get("queryType")
    errs = []
    if query_type not in PANEL_QUERY_TYPES[panel]:
        errs.append(f"{title}: a {panel} panel's editor offers {sorted(PANEL_QUERY_TYPES[panel])}, not {query_type!r}")
    if widget.get("timePreferance", "GLOBAL_TIME") not in TIME_PREFERENCES:
        errs.append(f"{title}: unknown timePreferance {widget.get('timePreferance')!r}")
    # the editor's tabs: every widget query carries all three parts (types/api/queryBuilder/queryBuilderData.ts: Query)
    for part, kind in (("promql", list), ("clickhouse_sql", list), ("builder", dict)):
        if not isinstance(query.get(part), kind):
            errs.append(f"{title}: query.{part} missing")
    if errs:
        return errs
    used = set()
    if query_type == "promql":
        active = [p for p in query["promql"] if not p.get("disabled")]
        if not active or not all(p.get("query", "").strip() and p.get("name") for p in active):
            errs.append(f"{title}: PromQL widget without a query")
        used = {v for p in active for v in re.findall(r"\$(\w+)", p.get("query", ""))}
    elif query_type == "builder":
        envelopes = builder_envelopes(widget)
        if not [e for e in envelopes if not e["spec"].get("disabled")]:
            errs.append(f"{title}: all queries are disabled - at least one query must be enabled")
        names = {e["spec"]["name"] for e in envelopes if e["type"] == "builder_query"}
        if len(names) != len([e for e in envelopes if e["type"] == "builder_query"]):
            errs.append(f"{title}: duplicate query name")
        for envelope in envelopes:
            errs += [f"{title}: {e}" for e in _check_builder_envelope(envelope, names)]
        used = {v for e in envelopes for v in re.findall(r"\$(\w+)", e["spec"].get("filter", {}).get("expression", ""))}
    unknown = sorted(used - variable_names)
    if unknown:
        errs.append(f"{title}: uses undefined dashboard variables {unknown}")
    return errs


def check_dashboard(dash: Any) -> list[str]:
    """Every reason a SigNoz v0.119.0 dashboard import would change or break this dashboard."""
    if not isinstance(dash, dict):
        return ["a dashboard is a JSON object"]
    errs = []
    if dash.get("version") != "v5":
        # handler.go Create: anything but v5 goes through the v4 -> v5 migration first, which
        # rewrites query-builder widgets; ours are written in the v5 form already
        errs.append(f'version {dash.get("version")!r}: the import migrates it as v4 (version "v5" is kept as is)')
    if not dash.get("title"):
        errs.append("title missing")
    widgets = dash.get("widgets") or []
    ids = [w.get("id") for w in widgets]
    if len(set(ids)) != len(ids):
        errs.append("widget ids must be unique")
    if sorted(item.get("i") for item in dash.get("layout") or []) != sorted(ids):
        errs.append("layout and widgets must match one to one")
    variables = dash.get("variables") or {}
    names = set()
    for var_id, var in variables.items():
        if var.get("id") != var_id or var.get("type") not in VARIABLE_TYPES or not var.get("name"):
            errs.append(f"variable {var_id}: id/type/name")
        elif " " in var["name"]:
            errs.append(f"variable {var['name']!r}: the v5 migration removes spaces from names")
        names.add(var.get("name"))
    for widget in widgets:
        errs += _check_widget(widget, names)
    return errs
