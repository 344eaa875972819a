"""How the AMI watch is scheduled (docs/ami_watch.md, "Scheduling"); how it is guarded
(refusals, the lock, the CI workflow) is in test_ami_watch_guards.py.

- scripts/install-ami-watch renders the systemd service + timer, which pass
  `systemd-analyze verify`, and the /etc/cron.d entry, whose schedule fires at exactly the
  timer's times (a small cron parser against `systemd-analyze calendar`);
- both scripts refuse bad input with exit 2 and a message naming it;
- scripts/ami-watch's lock: a second watch skips (or waits, then skips) and logs why;
- the CI workflow runs on the same schedule with OIDC credentials and no stored keys.

Every file is rendered into tmp_path (--dest): nothing is installed on this machine.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from schedule_support import (
    CHECKOUT_OWNER,
    REPO,
    UNIT,
    WATCH,
    WATCH_OPTIONS,
    WORKFLOW,
    install,
    needs_systemd_analyze,
    run,
)

# --- systemd ------------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file's settings by section; a key may repeat, so values are lists."""
    sections: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{path}: setting outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not a setting: {raw!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return sections


@dataclass(frozen=True)
class SystemdUnits:
    dest: Path
    service: Path
    timer: Path
    defaults: Path


@pytest.fixture(scope="module")
def systemd_units(tmp_path_factory: pytest.TempPathFactory) -> SystemdUnits:
    dest = tmp_path_factory.mktemp("systemd")
    result = install("systemd", dest, "--", *WATCH_OPTIONS)
    assert result.returncode == 0, result.stderr
    units = SystemdUnits(
        dest, dest / f"{UNIT}.service", dest / f"{UNIT}.timer", dest / "default" / UNIT
    )
    for path in (units.service, units.timer, units.defaults):
        assert path.is_file(), f"install-ami-watch systemd did not write {path}"
    return units


def verify(*units: Path) -> subprocess.CompletedProcess[str]:
    # Run from the units' folder, so relative names resolve against nothing of ours.
    return subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=units[0].parent,
        check=False,
    )


@needs_systemd_analyze
def test_the_rendered_units_pass_systemd_analyze_verify(systemd_units: SystemdUnits) -> None:
    result = verify(systemd_units.service, systemd_units.timer)
    about_us = [line for line in result.stderr.splitlines() if UNIT in line]
    assert result.returncode == 0, result.stderr
    assert about_us == [], result.stderr


@needs_systemd_analyze
def test_verify_fails_on_a_service_whose_command_does_not_exist(
    systemd_units: SystemdUnits, tmp_path: Path
) -> None:
    broken = tmp_path / systemd_units.service.name
    text = systemd_units.service.read_text()
    text, count = re.subn(
        r"(?m)^ExecStart=.*$", "ExecStart=scripts/no-such-ami-watch $AMI_WATCH_ARGS", text
    )
    assert count == 1, "the service has no ExecStart line to break"
    broken.write_text(text)
    shutil.copy(systemd_units.timer, tmp_path / systemd_units.timer.name)
    result = verify(broken, tmp_path / systemd_units.timer.name)
    assert result.returncode != 0, result.stderr
    assert "scripts/no-such-ami-watch" in result.stderr


def test_the_service_runs_the_checkouts_watch_as_its_owner(systemd_units: SystemdUnits) -> None:
    service = unit_settings(systemd_units.service)["Service"]
    assert service["ExecStart"] == [f"{WATCH} $AMI_WATCH_ARGS"]
    assert service["User"] == [CHECKOUT_OWNER]
    assert service["WorkingDirectory"] == [str(REPO)]
    assert service["Type"] == ["oneshot"]
    # The file it reads its options from is the one install-ami-watch writes (without --dest).
    assert service["EnvironmentFile"] == [f"-/etc/default/{UNIT}"]
    assert WATCH.is_file() and os.access(WATCH, os.X_OK)


def test_the_timer_starts_the_service(systemd_units: SystemdUnits) -> None:
    timer = unit_settings(systemd_units.timer)
    assert timer["Timer"]["Unit"] == [systemd_units.service.name]
    assert timer["Timer"]["Persistent"] == ["true"]
    assert len(timer["Timer"]["OnCalendar"]) == 1
    assert timer["Install"]["WantedBy"] == ["timers.target"]


def test_the_defaults_file_holds_the_watch_options(systemd_units: SystemdUnits) -> None:
    assignments = [
        line
        for line in systemd_units.defaults.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(assignments) == 1, assignments
    name, _, value = assignments[0].partition("=")
    assert name == "AMI_WATCH_ARGS"
    assert shlex.split(value) == [" ".join(WATCH_OPTIONS)]  # one quoted value
    assert value.strip('"').split() == WATCH_OPTIONS  # systemd splits $AMI_WATCH_ARGS


# --- cron ---------------------------------------------------------------------------------

# field name, lowest and highest value (day of week: 0 and 7 are both Sunday)
CRON_FIELDS = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
]


def parse_cron_field(text: str, name: str, low: int, high: int) -> set[int]:
    """One time field of the subset used: numbers, *, */n, a-b, a-b/n and lists of them."""
    values: set[int] = set()
    for item in text.split(","):
        match = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", item)
        if match is None:
            raise ValueError(f"{name}: cannot parse '{item}'")
        whole, first, last, step = match.groups()
        if whole == "*":
            start, stop = low, high
        else:
            start = int(first)
            stop = int(last) if last is not None else (high if step else start)
        if not low <= start <= stop <= high:
            raise ValueError(f"{name}: '{item}' is outside {low}-{high} or reversed")
        if step is not None and int(step) < 1:
            raise ValueError(f"{name}: step of '{item}' must be at least 1")
        values.update(range(start, stop + 1, int(step or 1)))
    return values


@dataclass(frozen=True)
class CronSchedule:
    minutes: set[int]
    hours: set[int]
    days: set[int]
    months: set[int]
    weekdays: set[int]  # 0 = Sunday .. 6
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, fields: list[str]) -> CronSchedule:
        assert len(fields) == 5, fields
        minutes, hours, days, months, weekdays = (
            parse_cron_field(text, *spec) for text, spec in zip(fields, CRON_FIELDS)
        )
        return cls(
            minutes,
            hours,
            days,
            months,
            {d % 7 for d in weekdays},
            fields[2] != "*",
            fields[4] != "*",
        )

    def _day_matches(self, moment: datetime) -> bool:
        day = moment.day in self.days
        weekday = (moment.isoweekday() % 7) in self.weekdays
        # cron: when both day fields are restricted, either one matching is enough.
        if self.days_restricted and self.weekdays_restricted:
            return day or weekday
        return day and weekday

    def next_times(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` firing minutes strictly after `after`."""
        moment = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = after + timedelta(days=366 * 5)
        found: list[datetime] = []
        while len(found) < count:
            assert moment < limit, "the schedule never fires"
            if moment.month not in self.months or not self._day_matches(moment):
                moment = moment.replace(hour=0, minute=0) + timedelta(days=1)
            elif moment.hour not in self.hours:
                moment = moment.replace(minute=0) + timedelta(hours=1)
            elif moment.minute not in self.minutes:
                moment += timedelta(minutes=1)
            else:
                found.append(moment)
                moment += timedelta(minutes=1)
        return found


@dataclass(frozen=True)
class CronEntry:
    path: Path
    environment: dict[str, str]
    fields: list[str]
    user: str
    command: str


def parse_cron_d(path: Path) -> CronEntry:
    """An /etc/cron.d file: environment lines, then exactly one job line."""
    text = path.read_text()
    environment: dict[str, str] = {}
    jobs: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        setting = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if setting and not jobs:
            environment[setting[1]] = setting[2]
            continue
        assert setting is None, f"{path}: environment line after the job: {line!r}"
        jobs.append(line)
    assert len(jobs) == 1, f"{path}: expected exactly one job line, got {jobs}"
    parts = jobs[0].split(None, 6)
    assert len(parts) == 7, f"{path}: a job needs 5 time fields, a user and a command: {jobs[0]!r}"
    return CronEntry(path, environment, parts[:5], parts[5], parts[6])


@pytest.fixture(scope="module")
def cron_entry(tmp_path_factory: pytest.TempPathFactory) -> CronEntry:
    dest = tmp_path_factory.mktemp("cron")
    result = install("cron", dest, "--", "-i", "inventory/aws")
    assert result.returncode == 0, result.stderr
    path = dest / UNIT
    assert path.is_file(), f"install-ami-watch cron did not write {path}"
    return parse_cron_d(path)


@pytest.fixture(scope="module")
def on_calendar(systemd_units: SystemdUnits) -> str:
    (value,) = unit_settings(systemd_units.timer)["Timer"]["OnCalendar"]
    return value


def systemd_next_times(spec: str, after: datetime, count: int) -> list[datetime]:
    result = run(
        [
            "systemd-analyze",
            "calendar",
            f"--iterations={count}",
            f"--base-time={after:%Y-%m-%d %H:%M:%S} UTC",
            spec,
        ],
        env={**os.environ, "TZ": "UTC"},
    )
    assert result.returncode == 0, result.stderr
    stamps = re.findall(r"(?m)^\s*(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC$", result.stdout)
    assert len(stamps) == count, result.stdout
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S") for stamp in stamps]


def test_the_cron_parser_expands_and_range_checks() -> None:
    assert parse_cron_field("*/6", "hour", 0, 23) == {0, 6, 12, 18}
    assert parse_cron_field("1,5-7,20-30/5", "minute", 0, 59) == {1, 5, 6, 7, 20, 25, 30}
    assert parse_cron_field("3/20", "minute", 0, 59) == {3, 23, 43}
    for bad in ("60", "5-3", "*/0", "a", "1-", ""):
        with pytest.raises(ValueError):
            parse_cron_field(bad, "minute", 0, 59)
    with pytest.raises(ValueError):
        parse_cron_field("0", "day of month", 1, 31)
    # Either day field may match when both are restricted (13th, or any Friday).
    schedule = CronSchedule.parse(["0", "0", "13", "*", "5"])
    times = schedule.next_times(datetime(2026, 2, 1), 3)
    assert times == [datetime(2026, 2, 6), datetime(2026, 2, 13), datetime(2026, 2, 20)]


def test_the_cron_entry_is_a_valid_cron_d_file(cron_entry: CronEntry) -> None:
    assert cron_entry.path.read_text().endswith("\n"), "cron ignores a last line without a newline"
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cron_entry.path.name), (
        "cron skips /etc/cron.d files whose name has other characters (e.g. a dot)"
    )
    assert cron_entry.path.stat().st_mode & 0o022 == 0, "cron skips group/other-writable files"
    assert set(cron_entry.environment) == {"SHELL", "PATH"}
    assert Path(cron_entry.environment["SHELL"]).is_file()
    CronSchedule.parse(cron_entry.fields)  # raises on a field out of range
    assert "%" not in cron_entry.command.replace(r"\%", ""), "cron turns % into a newline"


def test_the_cron_job_runs_the_checkouts_watch_quietly_as_its_owner(
    cron_entry: CronEntry,
) -> None:
    pwd.getpwnam(cron_entry.user)  # raises KeyError when the user does not exist
    assert cron_entry.user == CHECKOUT_OWNER
    argv = shlex.split(cron_entry.command)
    assert argv[0] == str(WATCH)
    assert Path(argv[0]).is_file() and os.access(argv[0], os.X_OK)
    assert argv[1:] == ["--quiet", "-i", "inventory/aws"]


def test_the_cron_path_finds_what_the_watch_runs(cron_entry: CronEntry) -> None:
    path = cron_entry.environment["PATH"]
    missing = [
        tool
        for tool in ("bash", "flock", "find", "sort", "xargs", "date", "tee")
        if shutil.which(tool, path=path) is None
    ]
    assert missing == [], f"not on cron's PATH {path}: {missing}"


@needs_systemd_analyze
@pytest.mark.parametrize(
    "after",
    [
        datetime(2026, 2, 27, 19, 3, 27),  # across the end of February, in a common year
        datetime(2026, 12, 31, 18, 17, 0),  # exactly on a firing time, across the new year
        datetime(2028, 2, 28, 23, 59, 59),
    ],  # a leap day
    ids=str,
)
def test_the_cron_entry_fires_at_the_timers_times(
    cron_entry: CronEntry, on_calendar: str, after: datetime
) -> None:
    cron_times = CronSchedule.parse(cron_entry.fields).next_times(after, 8)
    assert cron_times == systemd_next_times(on_calendar, after, 8)


def test_the_ci_workflow_runs_on_the_cron_entrys_schedule_and_by_hand(
    cron_entry: CronEntry,
) -> None:
    triggers = yaml.safe_load(WORKFLOW.read_text())["on"]
    assert [entry["cron"] for entry in triggers["schedule"]] == [" ".join(cron_entry.fields)]
    assert "workflow_dispatch" in triggers
