"""Filters of the deploy role: the smoke test's events and the answers it expects."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

# The collection root is two folders above plugins/filter/; its src/ holds the project's
# tools (packed into the collection: a filter cannot count on the tools being installed
# where Ansible runs, as they are in the project's virtualenv). The package folder is
# loaded by its __init__.py (a package: its modules import each other).
LAMBDA_INVOKE = Path(__file__).resolve().parents[2] / "src/lambda_invoke/__init__.py"


def _lambda_invoke() -> ModuleType:
    """The runtime client stand-in (src/lambda_invoke, which package_test and the sandbox
    and local smoke tests run): its subset_mismatches is the one rule every platform judges
    an answer by."""
    name = "r_lambda_package_test_lambda_invoke"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, LAMBDA_INVOKE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


def _judged(answer: Any) -> Any:
    """What is compared of an answer: a proxy answer's status code and its body (parsed:
    data, not text), not its headers (CORS_ALLOW_ORIGINS may differ by design)."""
    if isinstance(answer, dict) and isinstance(answer.get("body"), str) and "statusCode" in answer:
        try:
            return {"statusCode": answer["statusCode"], "body": json.loads(answer["body"])}
        except ValueError:
            return {"statusCode": answer["statusCode"], "body": answer["body"]}
    return answer


def deploy_recorded_cases(report: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    """The clean-host test's record (lambda-runtime.json) of each named case: its event and
    the answer the verified package gave, which the deployed function must give again."""
    recorded = {case.get("name"): case for case in report.get("cases", [])}
    cases = []
    for name in names:
        case = recorded.get(name)
        if case is None:
            raise ValueError(
                f"deploy_smoke_cases names {name!r}, which the release's clean-host test did "
                f"not run (it ran: {', '.join(sorted(map(str, recorded)))})"
            )
        if not case.get("passed") or case.get("kind") != "response" or "event" not in case:
            raise ValueError(
                f"the release's clean-host test has no passed answer with its event for {name!r}"
            )
        cases.append({"name": name, "event": case["event"], "answer": json.loads(case["body"])})
    return cases


def deploy_answer_problems(expected: Any, actual: Any, tol: float = 1e-9) -> str:
    """Why the deployed function's answer is not the recorded one ('' when it is)."""
    problems = _lambda_invoke().subset_mismatches(_judged(expected), _judged(actual), "$", tol)
    return "; ".join(problems)


def deploy_invoke_problems(results: list[dict[str, Any]], tol: float = 1e-9) -> list[dict]:
    """The smoke events whose invocation (amazon.aws.lambda_execute, looped over the smoke
    cases with failed_when: false) failed or answered otherwise than the clean host:
    [{name, problem}]."""
    failures = []
    for result in results:
        case = result["item"]
        # Registered under failed_when: false, a failed invocation has failed=False: it is
        # told by its message and the missing result (a function error carries both).
        output = (result.get("result") or {}).get("output")
        failed = output is None or (isinstance(output, dict) and "errorType" in output)
        if result.get("msg") and (result.get("failed") or failed):
            problem = f"the invocation failed: {result['msg']}"
        else:
            problem = deploy_answer_problems(case["answer"], output, tol)
        if problem:
            failures.append({"name": case["name"], "problem": problem})
    return failures


def deploy_report_problems(cases: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The failed cases of the runtime client stand-in's report (lambda_invoke)."""
    return [
        {"name": case["name"], "problem": case.get("message") or "failed"}
        for case in cases
        if not case.get("passed")
    ]


def deploy_sha256_mismatches(results: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The downloaded objects (ansible.builtin.stat with sha256, looped over manifest
    entries {key, sha256}) whose bytes are not the manifest's."""
    return [
        {
            "key": r["item"]["key"],
            "actual": r["stat"].get("checksum"),
            "expected": r["item"]["sha256"],
        }
        for r in results
        if r["stat"].get("checksum") != r["item"]["sha256"]
    ]


def deploy_env_args(environment: dict[str, Any]) -> list[str]:
    """The function's environment as the stand-in's --env KEY=VALUE arguments."""
    return [
        arg for key, value in sorted(environment.items()) for arg in ("--env", f"{key}={value}")
    ]


def deploy_invoke_events(cases: list[dict[str, Any]], tol: float = 1e-9) -> list[dict[str, Any]]:
    """The smoke cases as the runtime client stand-in's events file (lambda_invoke): the
    recorded answer is the expectation (a proxy answer's body compared as JSON)."""
    events = []
    for case in cases:
        answer = case["answer"]
        if isinstance(answer, dict) and isinstance(answer.get("body"), str):
            expect = {
                "kind": "response",
                "status_code": answer.get("statusCode"),
                "body_json_subset": json.loads(answer["body"]),
                "abs_tol": tol,
            }
        else:
            expect = {"kind": "response", "json_subset": answer, "abs_tol": tol}
        events.append({"name": case["name"], "event": case["event"], "expect": expect})
    return events


def deploy_code_sha256(hex_digest: str) -> str:
    """A sha256 as Lambda's CodeSha256 writes it: the digest in base64."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def deploy_memory_size(configured_mb: Any, manifest: dict[str, Any]) -> int:
    """The function's memory (MB): deploy_memory_mb, or the size the release recorded as
    serving its package (the manifest's memory.memory_mb), whichever is larger."""
    recorded = (manifest.get("memory") or {}).get("memory_mb")
    return max(int(configured_mb), int(recorded or 0))


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict:
        return {
            "deploy_recorded_cases": deploy_recorded_cases,
            "deploy_answer_problems": deploy_answer_problems,
            "deploy_invoke_events": deploy_invoke_events,
            "deploy_invoke_problems": deploy_invoke_problems,
            "deploy_report_problems": deploy_report_problems,
            "deploy_env_args": deploy_env_args,
            "deploy_sha256_mismatches": deploy_sha256_mismatches,
            "deploy_code_sha256": deploy_code_sha256,
            "deploy_memory_size": deploy_memory_size,
        }
