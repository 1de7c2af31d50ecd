#!/usr/bin/env python3
"""A ValidatingAdmissionPolicy's CEL, evaluated by cel-python (an
implementation independent of Kubernetes' and of ours) on sample admission
requests.

  cel_check.py < {"policy": <ValidatingAdmissionPolicy>, "requests": [<request>, ...]}

Every expression (match conditions, validations, message expressions) is
compiled first: one that does not compile fails the run (exit 1, naming it).
Then, for each request (an AdmissionRequest's fields: operation, resource,
name, userInfo, ...), prints one JSON line:
  {"matched": bool, "allowed": bool, "messages": [...]}
`matched`: a resource rule covers the request and every match condition
holds; `allowed`: not matched, or every validation holds; `messages`: those
of the failed validations (messageExpression when it evaluates).
"""

import json
import sys

import celpy


def compiled(env, expression, where):
    try:
        return env.program(env.compile(expression))
    except Exception as error:  # noqa: BLE001 - any failure to compile is the finding
        sys.exit(f"{where}: does not compile: {expression!r}: {error}")


def covers(rule, request):
    resource = request["resource"]
    name = resource["resource"] + (
        "/" + request["subResource"] if request.get("subResource") else ""
    )
    return (
        resource["group"] in rule["apiGroups"]
        and name in rule["resources"]
        and request["operation"] in rule["operations"]
    )


def main():
    given = json.load(sys.stdin)
    spec = given["policy"]["spec"]
    env = celpy.Environment()
    conditions = [
        compiled(env, c["expression"], f"matchConditions {c['name']}")
        for c in spec.get("matchConditions", [])
    ]
    validations = []
    for i, v in enumerate(spec["validations"]):
        check = compiled(env, v["expression"], f"validations[{i}]")
        message = (
            compiled(env, v["messageExpression"], f"validations[{i}].messageExpression")
            if "messageExpression" in v
            else None
        )
        validations.append((check, message, v.get("message", "")))
    for request in given["requests"]:
        activation = {"request": celpy.json_to_cel(request)}
        matched = any(
            covers(rule, request) for rule in spec["matchConstraints"]["resourceRules"]
        ) and all(bool(c.evaluate(activation)) for c in conditions)
        messages = []
        if matched:
            for check, message, fallback in validations:
                try:
                    ok = bool(check.evaluate(activation))
                except Exception:  # noqa: BLE001 - an error denies, as failurePolicy Fail
                    ok = False
                if not ok:
                    try:
                        said = str(message.evaluate(activation)) if message else fallback
                    except Exception:  # noqa: BLE001 - Kubernetes falls back to `message`
                        said = fallback
                    messages.append(said)
        print(json.dumps({"matched": matched, "allowed": not messages, "messages": messages}))


if __name__ == "__main__":
    main()
