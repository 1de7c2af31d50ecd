#!/usr/bin/env python3
"""Argo CD health checks (deploy/argocd/health.yaml) run by a real Lua
(lupa's Lua 5.4; the scripts use nothing beyond Lua 5.1, as Argo CD's
gopher-lua) against objects.

  argocd_health.py HEALTH.yaml < {"objects": [<object>, ...]}

Prints one JSON line per object: {"status": ..., "message": ...}, from the
script of `resource.customizations.health.<group>_<kind>`. A script that
does not load, or an object of a kind without one, fails the run.
"""

import json
import sys

import yaml
from lupa import lua54


def to_lua(runtime, value):
    if isinstance(value, dict):
        return runtime.table_from({k: to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, v) for v in value])
    return value


def main():
    health = yaml.safe_load(open(sys.argv[1]))["data"]
    given = json.load(sys.stdin)
    for obj in given["objects"]:
        group = obj["apiVersion"].split("/")[0]
        key = f"resource.customizations.health.{group}_{obj['kind']}"
        if key not in health:
            sys.exit(f"no health check {key}")
        runtime = lua54.LuaRuntime(unpack_returned_tuples=True)
        runtime.globals().obj = to_lua(runtime, obj)
        try:
            check = runtime.eval("function() " + health[key] + " end")
        except Exception as error:  # noqa: BLE001 - a script that does not load is the finding
            sys.exit(f"{key} does not load: {error}")
        hs = check()
        print(json.dumps({"status": hs["status"], "message": hs["message"]}))


if __name__ == "__main__":
    main()
