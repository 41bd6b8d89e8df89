#!/usr/bin/env python3
"""Evaluates every PromQL expression of the Grafana dashboard and of the loaded rules through a real
Prometheus and fails if any is invalid or returns no series.

A panel that shows nothing on cutover night is a defect, so "valid" is not enough: each expression
must return at least one series from a proxy that has served traffic, and at least one of them must
have a number (Grafana draws NaN, e.g. a quantile or ratio over no traffic, as nothing). Alert rules and dashboard
annotations are conditions, empty while all is well by design; for those the check also evaluates
the expression with every comparison turned into a `bool` comparison, which must return series
(proving the metrics under the condition exist), and the rule must report health "ok".

Standard library only (PyYAML may be missing): the rules come from Prometheus' /api/v1/rules, i.e.
exactly what Prometheus loaded.

usage: promql_check.py DASHBOARD_JSON PROMETHEUS_URL EXPECTED_RULE_COUNT [EVAL_TIME]

EVAL_TIME (unix seconds) evaluates every expression at that instant instead of "now", so rate
windows cannot slide past a short load while the check runs.
"""

import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

# What Grafana would put in for its built-in interval variables, for a 1s scrape interval.
BUILTINS = {"__rate_interval": "15s", "__interval": "5s", "__range": "1m", "__interval_ms": "5000"}
COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


def get(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # 400/422: Prometheus explains in the body
        return json.load(e)


EVAL_TIME = None


def query(base, expr):
    """Returns (error or None, number of series, number of series with a finite value)."""
    params = {"query": expr}
    if EVAL_TIME:
        params["time"] = EVAL_TIME
    body = get(f"{base}/api/v1/query?" + urllib.parse.urlencode(params))
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}", 0, 0
    data = body["data"]
    if data["resultType"] == "string":
        return None, 1, 1
    if data["resultType"] == "scalar":
        return None, 1, int(math.isfinite(float(data["result"][1])))
    finite = sum(1 for r in data["result"] if math.isfinite(float(r["value"][1])))
    return None, len(data["result"]), finite


def dashboard_variables(dash):
    """Value substituted for each dashboard variable: a query variable's "All" value."""
    values = dict(BUILTINS)
    for var in dash.get("templating", {}).get("list", []):
        name = var["name"]
        if var.get("type") == "datasource":
            continue
        if var.get("includeAll"):
            values[name] = var.get("allValue") or ".*"
        else:
            cur = var.get("current", {}).get("value")
            values[name] = cur[0] if isinstance(cur, list) else (cur or ".*")
    return values


def substitute(expr, values):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(name)
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def with_bool(expr):
    """Inserts `bool` after every comparison operator outside label matchers, strings and ranges."""
    out, i, depth = [], 0, 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            j = i + 1
            while j < len(expr) and expr[j] != c:
                j += 2 if expr[j] == "\\" and c != "`" else 1
            out.append(expr[i : j + 1])
            i = j + 1
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
        if depth == 0:
            op = next((o for o in COMPARISONS if expr.startswith(o, i)), None)
            if op:
                out.append(op)
                i += len(op)
                if not re.match(r"\s*bool\b", expr[i:]):
                    out.append(" bool")
                continue
        out.append(c)
        i += 1
    return "".join(out)


def dashboard_exprs(dash):
    """(where, expr, is_condition) for every target, annotation and variable query."""
    found = []

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                found.append((f"panel '{p.get('title')}' {t.get('refId')}", t["expr"], False))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            found.append((f"annotation '{a.get('name')}'", a["expr"], True))
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if var.get("type") != "query" or not q:
            continue
        m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", q)
        if not m:
            found.append((f"variable '{var['name']}'", q, False))
        else:
            found.append((f"variable '{var['name']}'", f"count by ({m.group(2)}) ({m.group(1)})", False))
    return found


def main():
    global EVAL_TIME
    dash_path, base, expected_rules = sys.argv[1], sys.argv[2].rstrip("/"), int(sys.argv[3])
    EVAL_TIME = sys.argv[4] if len(sys.argv) > 4 else None
    with open(dash_path) as f:
        dash = json.load(f)
    values = dashboard_variables(dash)
    failures, checked = [], 0

    def check(where, expr, condition):
        nonlocal checked
        checked += 1
        err, n, finite = query(base, expr)
        if err:
            failures.append(f"INVALID {where}: {err}\n    {expr}")
            return
        if condition:
            bexpr = with_bool(expr)
            err, n, finite = query(base, bexpr)
            if err:
                failures.append(f"INVALID (bool form) {where}: {err}\n    {bexpr}")
                return
        if n == 0:
            failures.append(f"EMPTY {where}: returns no series\n    {expr}")
            return
        if finite == 0:
            failures.append(f"NAN {where}: every series is NaN (drawn as nothing)\n    {expr}")
            return
        print(f"ok  {n:4d} series  {where}")

    for where, expr, cond in dashboard_exprs(dash):
        try:
            expr = substitute(expr, values)
        except KeyError as e:
            failures.append(f"INVALID {where}: unknown dashboard variable ${e.args[0]}\n    {expr}")
            continue
        check(where, expr, cond)

    groups = get(f"{base}/api/v1/rules")["data"]["groups"]
    rules = [(g["name"], r) for g in groups for r in g["rules"]]
    if len(rules) != expected_rules:
        failures.append(f"Prometheus loaded {len(rules)} rules, promtool counted {expected_rules}")
    for group, r in rules:
        where = f"{r['type']} rule {group}/{r['name']}"
        check(where, r["query"], r["type"] == "alerting")
        if r.get("health") != "ok":
            failures.append(f"UNHEALTHY {where}: {r.get('health')} {r.get('lastError', '')}")

    # Every panel must read the datasource variable, so switching Prometheus switches every panel.
    for p in dash.get("panels", []):
        ds = p.get("datasource")
        if p.get("type") != "row" and (not ds or ds.get("uid") != "${datasource}"):
            failures.append(f"panel '{p.get('title')}' does not use the $datasource variable")
    if not any(v.get("type") == "datasource" and v.get("query") == "prometheus"
               for v in dash.get("templating", {}).get("list", [])):
        failures.append("dashboard has no datasource variable of type prometheus")

    print(f"{checked} expressions evaluated, {len(failures)} failed")
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
