#!/usr/bin/env python3
"""`kubectl get` columns, rendered from CRDs' additionalPrinterColumns by
jsonpath-ng (a JSONPath library independent of ours and of kubectl's, with
the filter syntax the columns use).

  printer_columns.py < {"crds": [<CRD>, ...], "objects": [<object>, ...]}

Prints one JSON line per object: {"kind", "name", "columns": {name: value}},
each column as kubectl shows it: matches joined by ",", a missing value as
null (kubectl's "<none>"). A JSONPath that does not parse fails the run.
"""

import json
import sys

from jsonpath_ng.ext import parse


def main():
    given = json.load(sys.stdin)
    columns = {}
    for crd in given["crds"]:
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            for column in version.get("additionalPrinterColumns", []):
                path = column["jsonPath"]
                try:
                    expression = parse("$" + path)
                except Exception as error:  # noqa: BLE001 - any parse failure is the finding
                    sys.exit(f"{kind} column {column['name']}: {path!r} does not parse: {error}")
                columns.setdefault(kind, []).append((column["name"], expression))
    for obj in given["objects"]:
        row = {}
        for name, expression in columns[obj["kind"]]:
            found = [m.value for m in expression.find(obj)]
            values = [
                json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else str(v)
                for v in found
            ]
            row[name] = ",".join(values) if values else None
        print(json.dumps({"kind": obj["kind"], "name": obj["metadata"]["name"], "columns": row}))


if __name__ == "__main__":
    main()
