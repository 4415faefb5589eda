#!/usr/bin/env python3
"""Checks that every metric template.yaml's alarms and dashboard read is one the code emits.

    check-template-metrics.py TEMPLATE CATALOGUE

CATALOGUE is a JSON file (or - for standard input) as tests/it/template.rs writes it from
`metrics::CATALOGUE` and `metrics::DIMENSIONS`:

    {"metrics": [{"name": "Decisions", "dimension_sets": [["Outcome"], ["Reason"]]}, ...],
     "dimensions": {"Reason": ["rules_unavailable", ...], ...}}

A metric in the service's namespace must be in the catalogue, read with exactly one of its
dimension sets, and every dimension value must be one the code writes. The service's namespace
is the function's METRICS_NAMESPACE as the template sets it; an alarm or a widget reading
another namespace must read AWS's own (AWS/Lambda, AWS/ApiGateway) with the dimensions those
services publish, and name this template's own resources: FunctionName a function,
Resource a function's alias (`${Function}:live`), ApiId the HTTP API. Prints what it checked;
exits 1 with one line per fault.

Parses the template with cfn-lint's reader (in the test virtualenv), which keeps the
CloudFormation tags (!Sub, !Ref) as the objects they stand for.
"""
import json
import re
import sys

from cfnlint.decode import decode

# AWS's own metrics the template may read, with the dimension sets those services publish.
AWS_METRICS = {
    "AWS/Lambda": {
        "names": {"Errors", "Throttles", "Duration", "Invocations", "ConcurrentExecutions"},
        "dimension_sets": [{"FunctionName"}, {"FunctionName", "Resource"}],
    },
    "AWS/ApiGateway": {
        "names": {"4xx", "5xx", "Count", "Latency", "IntegrationLatency"},
        "dimension_sets": [{"ApiId"}, {"ApiId", "Stage"}],
    },
}

# The resource type each of those dimensions names (Resource: a function's alias).
DIMENSION_RESOURCES = {
    "FunctionName": "AWS::Serverless::Function",
    "Resource": "AWS::Serverless::Function",
    "ApiId": "AWS::Serverless::HttpApi",
}


def reference(value):
    """(logical ID, what follows it) of a dimension value that names a resource: !Ref X,
    !Sub "${X}...", or a dashboard's "@ref:X@..." placeholder; None otherwise."""
    if isinstance(value, dict) and set(value) == {"Ref"} and isinstance(value["Ref"], str):
        return value["Ref"], ""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        value = value["Fn::Sub"]
        match = re.fullmatch(r"\$\{([A-Za-z0-9]+)\}(.*)", value)
        return (match.group(1), match.group(2)) if match else None
    if isinstance(value, str):
        match = re.fullmatch(r"@ref:([A-Za-z0-9]+)@(.*)", value)
        return (match.group(1), match.group(2)) if match else None
    return None


def shown(value):
    """A dimension value as the template writes it."""
    if isinstance(value, str):
        return json.dumps(re.sub(r"@ref:([A-Za-z0-9]+)@", r"${\1}", value))
    return json.dumps(value)


def main():
    template_path, catalogue_path = sys.argv[1], sys.argv[2]
    with (sys.stdin if catalogue_path == "-" else open(catalogue_path)) as f:
        catalogue = json.load(f)
    template, problems = decode(template_path)
    if problems:
        for problem in problems:
            print(f"{template_path}: {problem}", file=sys.stderr)
        return 1
    metrics = {m["name"]: [set(s) for s in m["dimension_sets"]] for m in catalogue["metrics"]}
    values = {name: set(v) for name, v in catalogue["dimensions"].items()}
    resources = template.get("Resources", {})
    faults = []

    # Every function is the same binary and writes to one namespace.
    namespaces = [
        r["Properties"].get("Environment", {}).get("Variables", {}).get("METRICS_NAMESPACE")
        for r in resources.values()
        if r.get("Type") == "AWS::Serverless::Function"
    ]
    if not namespaces or None in namespaces or any(n != namespaces[0] for n in namespaces):
        print("template: every function must set the same METRICS_NAMESPACE", file=sys.stderr)
        return 1
    ours = namespaces[0]

    def check_names(where, metric, dimensions):
        """AWS's dimensions name this template's resources, as the service publishes them."""
        for dimension, value in dimensions.items():
            kind = DIMENSION_RESOURCES.get(dimension)
            if kind is None:
                continue
            named = reference(value)
            resource = resources.get(named[0], {}) if named else {}
            if resource.get("Type") != kind:
                faults.append(
                    f"{where}: {metric} {dimension} {shown(value)} names no {kind} of this "
                    f"template"
                )
                continue
            if dimension == "Resource":
                alias = resource["Properties"].get("AutoPublishAlias")
                function = reference(dimensions.get("FunctionName"))
                if alias is None or named[1] != f":{alias}" or function != (named[0], ""):
                    faults.append(
                        f"{where}: {metric} Resource {shown(value)} is not the alias of its "
                        f"FunctionName ({named[0]} publishes {alias or 'none'})"
                    )
            elif named[1]:
                faults.append(
                    f"{where}: {metric} {dimension} {shown(value)} is more than {named[0]}"
                )

    def check(where, namespace, name, dimensions):
        """One metric as read by an alarm or a widget: {dimension: literal value}."""
        if namespace == ours:
            if name not in metrics:
                faults.append(f"{where}: {name} is not a metric the service emits")
                return
            if set(dimensions) not in metrics[name]:
                sets = " or ".join(str(sorted(s)) for s in metrics[name])
                faults.append(
                    f"{where}: {name} is emitted with dimensions {sets}, "
                    f"not {sorted(dimensions)}"
                )
            for dimension, value in dimensions.items():
                if isinstance(value, str) and value not in values.get(dimension, set()):
                    faults.append(f"{where}: {name} never has {dimension} = {value!r}")
        elif isinstance(namespace, str) and namespace in AWS_METRICS:
            known = AWS_METRICS[namespace]
            if name not in known["names"]:
                faults.append(f"{where}: {namespace} {name} is not a metric this check knows")
            if set(dimensions) not in known["dimension_sets"]:
                faults.append(f"{where}: {namespace} {name} has no dimensions {sorted(dimensions)}")
            check_names(where, f"{namespace} {name}", dimensions)
        else:
            faults.append(
                f"{where}: namespace {json.dumps(namespace)} is neither the function's "
                f"METRICS_NAMESPACE ({json.dumps(ours)}) nor one of {sorted(AWS_METRICS)}"
            )

    alarms = 0
    for logical, resource in resources.items():
        if resource.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        alarms += 1
        props = resource["Properties"]
        if not props.get("AlarmActions"):
            faults.append(f"{logical}: the alarm notifies no one (no AlarmActions)")
        read = []
        if "MetricName" in props:
            read.append((props.get("Namespace"), props["MetricName"], props.get("Dimensions", [])))
        for query in props.get("Metrics", []):
            stat = query.get("MetricStat")
            if stat:
                metric = stat["Metric"]
                read.append((metric.get("Namespace"), metric["MetricName"], metric.get("Dimensions", [])))
        if not read:
            faults.append(f"{logical}: the alarm reads no metric")
        for namespace, name, dims in read:
            check(logical, namespace, name, {d["Name"]: d["Value"] for d in dims})

    widgets = 0
    for logical, resource in resources.items():
        if resource.get("Type") != "AWS::CloudWatch::Dashboard":
            continue
        body = resource["Properties"]["DashboardBody"]
        if not (isinstance(body, dict) and "Fn::Sub" in body and isinstance(body["Fn::Sub"], list)):
            faults.append(f"{logical}: the body must be !Sub [TEXT, {{Namespace: ...}}]")
            continue
        text, variables = body["Fn::Sub"]
        if variables.get("Namespace") != ours:
            faults.append(f"{logical}: Namespace is not the function's METRICS_NAMESPACE")
        # Every ${...} stands for a resource, a parameter or the namespace: a placeholder
        # keeps the JSON readable (numbers stay numbers) and says which resource it was.
        text = text.replace("${Namespace}", "@service-namespace@")
        text = re.sub(r"\$\{RulesCacheTtlSeconds\}", "60", text)
        text = re.sub(r"\$\{([A-Za-z0-9]+)\}", r"@ref:\1@", text)
        text = re.sub(r"\$\{[^}]+\}", "resolved", text)
        try:
            dashboard = json.loads(text)
        except ValueError as error:
            faults.append(f"{logical}: the body is not JSON once substituted: {error}")
            continue
        for widget in dashboard.get("widgets", []):
            title = widget.get("properties", {}).get("title", "?")
            previous = []
            for row in widget.get("properties", {}).get("metrics", []):
                widgets += 1
                fields = [f for f in row if not isinstance(f, dict)]
                # "." repeats the field above it, as CloudWatch reads it.
                fields = [p if f == "." and i < len(previous) else f for i, (f, p) in
                          enumerate(zip(fields, previous + [None] * len(fields)))]
                previous = fields
                namespace = ours if fields[0] == "@service-namespace@" else fields[0]
                dims = dict(zip(fields[2::2], fields[3::2]))
                check(f"{logical} {title!r}", namespace, fields[1], dims)

    for fault in faults:
        print(fault, file=sys.stderr)
    print(f"checked {alarms} alarms and {widgets} dashboard metrics against {len(metrics)} metrics")
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
