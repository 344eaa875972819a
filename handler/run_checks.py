"""Run the packaged checks and write a JUnit XML report (Python standard library only).

    python3 run_checks.py [--junit OUT.xml]

Runs every test_*.py in this file's directory with unittest. Only that directory is
searched, not its subdirectories: in a deployment package those hold rpy2 and other
dependencies, whose own test suites must not run. Prints "N passed, M failed, K skipped"
and exits 1 if any check failed or errored, or if no check was found.
"""

import argparse
import datetime
import glob
import importlib.util
import os
import socket
import sys
import time
import traceback
import unittest
import xml.etree.ElementTree as ET
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE_NAME = "handler-package-checks"
# Run first, before any check starts R in this process: its checks start R in fresh
# processes, one at a time, and a child's R beside this process's own would need twice the
# function's memory under the clean host's cap.
FIRST = "test_fresh_process.py"


def _run_order(path: str) -> tuple:
    """FIRST, then the other test files by name."""
    name = os.path.basename(path)
    return (name != FIRST, name)


class CaseRecord:
    """The outcome of one test: passed, failure, error or skipped."""

    def __init__(
        self, test_id: str, seconds: float, outcome: str, message: str = "", detail: str = ""
    ) -> None:
        self.test_id = test_id
        self.seconds = seconds
        self.outcome = outcome
        self.message = message
        self.detail = detail


class RecordingResult(unittest.TextTestResult):
    """A TextTestResult that also records each test's outcome and duration."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records: list = []
        self._started: dict = {}

    def startTest(self, test: unittest.TestCase) -> None:
        self._started[test.id()] = time.perf_counter()
        super().startTest(test)

    def _record(self, test: Any, outcome: str, message: str = "", detail: str = "") -> None:
        started = self._started.get(test.id())
        seconds = time.perf_counter() - started if started is not None else 0.0
        self.records.append(CaseRecord(test.id(), seconds, outcome, message, detail))

    def _record_exception(self, test: Any, outcome: str, err: Any) -> None:
        message = traceback.format_exception_only(err[0], err[1])[-1].strip()
        self._record(test, outcome, message, self._exc_info_to_string(err, test))

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._record_exception(test, "failure", err)

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._record_exception(test, "error", err)

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "passed")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "failure", "unexpected success of a test marked expectedFailure")

    def addSubTest(self, test: unittest.TestCase, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            outcome = "failure" if issubclass(err[0], test.failureException) else "error"
            self._record_exception(subtest, outcome, err)


def load_checks(directory: str) -> unittest.TestSuite:
    """The tests of every test_*.py directly in ``directory``, each loaded from its file
    under its own name (they import the package's modules, which the package's root on
    Python's path provides: this script's folder, or PYTHONPATH as Lambda sets it)."""
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for path in sorted(glob.glob(os.path.join(directory, "test_*.py")), key=_run_order):
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        suite.addTests(loader.loadTestsFromModule(module))
    return suite


def _split_id(test_id: str) -> tuple:
    """("module.Class", "test_name") from "module.Class.test_name [subtest]"."""
    head, _sep, rest = test_id.partition(" ")
    classname, _dot, name = head.rpartition(".")
    return (classname or head), ((name or head) + (" " + rest if rest else ""))


def junit_xml(records: list, seconds: float) -> ET.ElementTree:
    counts = {
        "tests": len(records),
        "failures": sum(r.outcome == "failure" for r in records),
        "errors": sum(r.outcome == "error" for r in records),
        "skipped": sum(r.outcome == "skipped" for r in records),
    }
    attributes = {key: str(value) for key, value in counts.items()}
    attributes["time"] = f"{seconds:.3f}"
    root = ET.Element("testsuites", attributes)
    suite = ET.SubElement(
        root,
        "testsuite",
        dict(
            attributes,
            name=SUITE_NAME,
            timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            hostname=socket.gethostname(),
        ),
    )
    for record in records:
        classname, name = _split_id(record.test_id)
        case = ET.SubElement(
            suite, "testcase", classname=classname, name=name, time=f"{record.seconds:.3f}"
        )
        if record.outcome in ("failure", "error"):
            element = ET.SubElement(case, record.outcome, message=record.message)
            element.text = record.detail
        elif record.outcome == "skipped":
            ET.SubElement(case, "skipped", message=record.message)
    return ET.ElementTree(root)


def summary(records: list) -> str:
    passed = sum(r.outcome == "passed" for r in records)
    failed = sum(r.outcome in ("failure", "error") for r in records)
    skipped = sum(r.outcome == "skipped" for r in records)
    return f"{passed} passed, {failed} failed, {skipped} skipped"


def run(directory: str, junit: Optional[str]) -> int:
    started = time.perf_counter()
    try:
        suite = load_checks(directory)
    except Exception:
        traceback.print_exc()
        print(f"cannot load the checks in {directory}")
        return 1
    runner = unittest.TextTestRunner(
        stream=sys.stderr, verbosity=2, resultclass=RecordingResult, buffer=True
    )
    result = runner.run(suite)
    records = result.records
    if junit:
        junit_xml(records, time.perf_counter() - started).write(
            junit, encoding="utf-8", xml_declaration=True
        )
    if not records:
        print(f"no checks found: no test_*.py in {directory}")
        return 1
    print(summary(records))
    return 0 if all(r.outcome in ("passed", "skipped") for r in records) else 1


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--junit", metavar="OUT.xml", help="write a JUnit XML report here")
    args = parser.parse_args(argv)
    return run(HERE, args.junit)


if __name__ == "__main__":
    sys.exit(main())
