"""The outputs: the JUnit XML file and the JSON report of a run."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any

from .driver import RunResult

_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def junit_xml(result: RunResult) -> ET.ElementTree:
    """<testsuites> holding one <testsuite>, as pytest writes its JUnit files."""
    errors = sum(case.error for case in result.cases)
    total = sum(case.seconds or 0.0 for case in result.cases)
    suites = ET.Element("testsuites", {"name": "lambda-runtime"})
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            "name": "lambda-runtime",
            "tests": str(len(result.cases)),
            "failures": str(result.failed - errors),
            "errors": str(errors),
            "skipped": "0",
            "time": f"{total:.6f}",
            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name in ("python", "init_s", "first_invoke_s", "peak_rss_mb"):
        value = getattr(result, name)
        text = "" if value is None else str(value)
        ET.SubElement(properties, "property", {"name": name, "value": text})
    for case in result.cases:
        element = ET.SubElement(
            suite,
            "testcase",
            {"classname": "lambda_invoke", "name": case.name, "time": f"{case.seconds or 0:.6f}"},
        )
        if not case.passed:
            tag = "error" if case.error else "failure"
            message = _xml_text(case.message or "")
            ET.SubElement(element, tag, {"message": message.splitlines()[0] if message else ""})
            element[-1].text = message
        if case.posted_to is not None:
            out = ET.SubElement(element, "system-out")
            out.text = _xml_text(f"POST {case.posted_to}\n{case.body}")
    if result.client_log:
        ET.SubElement(suite, "system-err").text = _xml_text("\n".join(result.client_log))
    return ET.ElementTree(suites)


def report_json(result: RunResult) -> dict[str, Any]:
    return {
        "python": result.python,
        "init_s": result.init_s,
        "first_invoke_s": result.first_invoke_s,
        "peak_rss_mb": result.peak_rss_mb,
        "cases": [
            {
                "name": case.name,
                "passed": case.passed,
                "event": case.event,
                "kind": case.kind,
                "posted_to": case.posted_to,
                "body": case.body,
                "seconds": case.seconds,
                "message": case.message,
            }
            for case in result.cases
        ],
        "passed": result.passed,
        "failed": result.failed,
        "error": result.error,
    }


def write_outputs(result: RunResult, junit: str, report: str) -> None:
    for path in (junit, report):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    junit_xml(result).write(junit, encoding="utf-8", xml_declaration=True)
    with open(report, "w", encoding="utf-8") as handle:
        json.dump(report_json(result), handle, indent=2)
        handle.write("\n")
