"""Enough of IAM's policy evaluation to decide a request against the project's policies
(identity policies and the bucket policy, conditions included)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import yaml
from iam_support import REPO

# --- Evaluating a request against the policies, conditions included ---
#
# Enough of IAM's evaluation logic for the project's policies: an explicit Deny in any policy
# wins, else an Allow in an identity policy is needed (the bucket policy only denies).
# Wildcards (* and ?) in actions, resources and Like operators; the policy variable
# ${aws:PrincipalAccount}; the condition operators the policies use, each key's values ORed,
# keys and operators ANDed. An operator this does not know fails the test: a new condition
# cannot pass unevaluated.

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
BUCKET_POLICY_TEMPLATE = REPO / "roles" / "artifact_store" / "templates" / "bucket-policy.json.j2"


@dataclass(frozen=True)
class Request:
    """One API call as IAM sees it: the action, the resource, the request context."""

    action: str
    resource: str
    context: tuple[tuple[str, object], ...] = ()

    @classmethod
    def of(cls, action: str, resource: str, context: dict | None = None) -> Request:
        return cls(action, resource, tuple(sorted((context or {}).items())))

    def value(self, key: str) -> object:
        found = {k.lower(): v for k, v in self.context}
        if key.lower() == "aws:principalaccount":
            return found.get(key.lower(), ACCOUNT)
        return found.get(key.lower())


def _glob(pattern: str, value: str, case: bool = True) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _substitute(text: str, request: Request) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: str(request.value(m.group(1))), text)


def _listed(value: object) -> list:
    return value if isinstance(value, list) else [value]


def _compare(operator: str, wanted: str, actual: object) -> bool:
    actual = str(actual).lower() if isinstance(actual, bool) else str(actual)
    if operator in ("StringEquals", "ArnEquals"):
        return actual == wanted
    if operator in ("StringLike", "ArnLike"):
        return _glob(wanted, actual)
    if operator == "Bool":
        return actual.lower() == wanted.lower()
    raise KeyError(f"condition operator {operator} is not evaluated here; add it")


def condition_holds(operator: str, key: str, wanted: object, request: Request) -> bool:
    actual = request.value(key)
    if operator == "Null":
        return (actual is None) == (str(wanted).lower() == "true")
    base, if_exists = operator.removesuffix("IfExists"), operator.endswith("IfExists")
    negated = base in ("StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike")
    if actual is None:
        return if_exists or negated
    positive = base.replace("Not", "") if negated else base
    hit = any(
        _compare(positive, _substitute(str(w), request), a)
        for w in _listed(wanted)
        for a in _listed(actual)
    )
    return not hit if negated else hit


def statement_applies(statement: dict, request: Request) -> bool:
    actions = _listed(statement["Action"])
    if not any(_glob(a, request.action, case=False) for a in actions):
        return False
    if "Resource" in statement:
        matched = any(
            _glob(_substitute(r, request), request.resource) for r in _listed(statement["Resource"])
        )
    else:
        matched = not any(
            _glob(_substitute(r, request), request.resource)
            for r in _listed(statement["NotResource"])
        )
    if not matched:
        return False
    return all(
        condition_holds(operator, key, wanted, request)
        for operator, keys in statement.get("Condition", {}).items()
        for key, wanted in keys.items()
    )


def decide(request: Request, identity: list[dict], resource: list[dict] = ()) -> str:
    """ "denied" (an explicit Deny applies), "allowed" (an identity Allow applies, no Deny),
    or "not allowed" (nothing allows it: IAM's implicit deny)."""
    applying = [
        s
        for policy in [*identity, *resource]
        for s in policy["Statement"]
        if statement_applies(s, request)
    ]
    if any(s["Effect"] == "Deny" for s in applying):
        return "denied"
    allowed = any(
        s["Effect"] == "Allow" and statement_applies(s, request)
        for policy in identity
        for s in policy["Statement"]
    )
    return "allowed" if allowed else "not allowed"


def bucket_policy(**settings: object) -> dict:
    """The bucket policy playbooks/bucket.yml sets, rendered from the role's template with
    its defaults and vars (settings override them, as -e would)."""
    import jinja2

    role = REPO / "roles" / "artifact_store"
    variables = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    variables |= yaml.safe_load((role / "vars" / "main.yml").read_text())
    variables |= settings
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["bool"] = lambda v: str(v).lower() in ("true", "yes", "on", "1")
    return json.loads(env.from_string(BUCKET_POLICY_TEMPLATE.read_text()).render(**variables))
