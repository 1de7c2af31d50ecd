#!/usr/bin/env python3
"""The Helm chart without a helm binary (helm-python-sdk bundles the Helm SDK).

  chart.py render [--values JSON] [--release NAME] [--namespace NS] [--hooks WHICH]
      prints the rendered templates (NOTES.txt aside), in template order,
      each under a `# Source:` line, as `helm template` would; `--hooks
      exclude` leaves out the objects annotated helm.sh/hook (the uninstall
      hook), `--hooks only` prints only those
  chart.py lint [--values JSON]
      `helm lint --strict`; prints every finding, exits 1 on a warning or
      an error (information such as "icon is recommended" passes)
  chart.py notes [--values JSON]
      prints the rendered NOTES.txt

`make manifests` writes deploy/meshguard.yaml (`--hooks exclude`) and
deploy/uninstall.yaml (`--hooks only`) with `render`; the tests call all
three. Errors (bad values, a template that fails) go to stderr, exit 1.
"""

import argparse
import json
import pathlib
import sys

import helm_python
import yaml

CHART = pathlib.Path(__file__).resolve().parent.parent / "charts" / "meshguard"


def render(chart, values, release, namespace):
    return chart.render(values, name=release, namespace=namespace, is_install=True)


def is_hook(document):
    meta = (yaml.safe_load(document) or {}).get("metadata") or {}
    return "helm.sh/hook" in (meta.get("annotations") or {})


def select(text, hooks):
    """The documents of one template's text that `hooks` keeps."""
    if hooks == "include":
        return text
    keep = (lambda d: is_hook(d)) if hooks == "only" else (lambda d: not is_hook(d))
    documents = [d.strip() for d in text.split("\n---") if d.strip()]
    return "\n---\n".join(d for d in documents if keep(d))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["render", "lint", "notes"])
    parser.add_argument("--values", default="{}", help="values as a JSON object")
    parser.add_argument("--release", default="meshguard")
    parser.add_argument("--namespace", default="meshguard-system")
    parser.add_argument("--chart", default=str(CHART))
    parser.add_argument("--hooks", choices=["include", "exclude", "only"], default="include")
    args = parser.parse_args()
    values = json.loads(args.values)
    try:
        if args.command == "lint":
            report = helm_python.lint(args.chart, values, strict=True, namespace=args.namespace)
            severities = {0: "unknown", 1: "info", 2: "warning", 3: "error"}
            failed = bool(report.get("errors"))
            for message in report.get("messages") or []:
                severity = message.get("severity", 0)
                failed |= severity >= 2
                name = severities.get(severity, severity)
                print(f"[{name}] {message.get('path')}: {message.get('error')}".rstrip())
            return 1 if failed else 0
        chart = helm_python.Chart.load(args.chart)
        rendered = render(chart, values, args.release, args.namespace)
        if args.command == "notes":
            notes = [text for path, text in rendered.items() if path.endswith("NOTES.txt")]
            print("".join(notes), end="")
            return 0
        out = []
        for path in sorted(rendered):
            if path.endswith("NOTES.txt"):
                continue
            text = select(rendered[path].strip(), args.hooks).strip()
            if not text:
                continue
            out.append(f"---\n# Source: {path}\n{text}\n")
        print("".join(out), end="")
        return 0
    except helm_python.HelmError as error:
        print(f"{args.chart}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
