"""The run: hand the cases to the client one by one, judge each answer, time the run."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .cases import Case, judge
from .client import Client
from .runtime_api import ANSWERED, EXITED, INIT_FAILED, Invocation, RuntimeApi


@dataclass
class CaseResult:
    name: str
    passed: bool
    posted_to: str | None = None
    body: str | None = None
    seconds: float | None = None
    message: str | None = None
    error: bool = False  # the client failed (JUnit <error>), not the expectation
    # The event handed out, and what the client posted ("response"/"error"): with body, the
    # record a deploy's smoke test compares the deployed function's answers with.
    event: Any = None
    kind: str | None = None


@dataclass
class RunResult:
    python: str
    cases: list[CaseResult] = field(default_factory=list)
    init_s: float | None = None
    first_invoke_s: float | None = None
    peak_rss_mb: float | None = None
    error: str | None = None
    client_log: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(case.passed for case in self.cases)

    @property
    def failed(self) -> int:
        return len(self.cases) - self.passed


def exit_description(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _client_failure(state: str, case: Case, client: Client, api: RuntimeApi, timeout: float) -> str:
    if state == INIT_FAILED and api.init_error is not None:
        return api.init_error.describe()
    if state == EXITED:
        client.finish_reading()
        return (
            f"the runtime client {exit_description(client.returncode())} before answering "
            f"case {case.name!r}; its last stderr lines:\n{client.last_stderr()}"
        )
    waiting = "" if api.first_next is not None else " (it never asked for an event: init)"
    return f"the runtime client did not answer case {case.name!r} within {timeout:g} s{waiting}"


def _case_result(case: Case, invocation: Invocation) -> CaseResult:
    message = judge(case.expect, invocation.kind or "", invocation.body)
    return CaseResult(
        name=case.name,
        passed=message is None,
        posted_to=invocation.posted_to,
        body=invocation.body.decode("utf-8", "replace"),
        seconds=None if invocation.seconds is None else round(invocation.seconds, 6),
        message=message,
        event=case.event,
        kind=invocation.kind,
    )


def drive(cases: Sequence[Case], api: RuntimeApi, client: Client, timeout: float) -> RunResult:
    """Hand the cases out one by one; stop at the first client failure."""
    result = RunResult(python="")
    client.start()
    for case in cases:
        if result.error is not None:
            result.cases.append(
                CaseResult(case.name, False, message=f"not run: {result.error}", error=True)
            )
            continue
        invocation = api.submit(case.event)
        state = api.wait_for(invocation, timeout, client.alive)
        if state == ANSWERED:
            result.cases.append(_case_result(case, invocation))
        else:
            result.error = _client_failure(state, case, client, api, timeout)
            result.cases.append(CaseResult(case.name, False, message=result.error, error=True))
    if api.first_next is not None:
        result.init_s = round(api.first_next - client.started, 6)
    if result.cases and result.cases[0].seconds is not None:
        result.first_invoke_s = result.cases[0].seconds
    result.peak_rss_mb = client.peak_rss_mb()
    return result
