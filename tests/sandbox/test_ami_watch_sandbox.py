"""The AMI watch on the sandbox platform: scripts/ami-watch against a moto server, every
instance of a rebuild backed by a container reached over real SSH.

The cases run in order against one bucket, as the watch would meet them in production:
no release yet (rebuilt and notified through SNS), the same AMI, a new AMI registered in
moto (reported in check mode and with rebuilds off), a changed SSM parameter whose rebuild
fails, and two watches at once. One rebuild succeeds: a rebuild after an AMI change runs
the same release with the same settings as the first (the decision is what differs, and
check mode proves it through moto), so a second successful release would prove nothing
new for minutes of CI. Each decision (dist/ami_watch.json) is kept in
dist/test-logs/sandbox-ami-watch-decisions.json.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from release_runs import LOG_DIR, REPO, Run
from sandbox_support import (
    AL2023_PARAMETER,
    NOTHING_LEFT,
    Pending,
    Sandbox,
    read_json,
    s3_snapshot,
)

pytestmark = pytest.mark.slow

BUCKET = "r-lambda-watch"
NAME = "ami-watch"
# The watch looks this parameter up first; while it does not exist, it falls back to the
# newest AMI of this account whose name matches the pattern (as on AWS with owner amazon).
PARAMETER = "/r-lambda/watch/al2023"
PATTERN = "r-lambda-watch-al2023-*"
TOPIC = "r-lambda-watch"


@dataclass
class Watch:
    """One finished scripts/ami-watch run and the decision it wrote."""

    run: Run
    decision: dict | None
    release: Run | None  # the rebuild's own run (its output is the release log)

    def check(self) -> Watch:
        self.run.check()
        assert self.decision is not None, f"no ami_watch.json, see {self.run.log}"
        return self


class Watcher:
    """Runs scripts/ami-watch as a scheduler would, with the sandbox's AWS settings, the AMI
    lookup above and release folders of its own; lock and logs in its own state folder."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.state = sandbox.workdir / NAME / "ami_watch"
        self.report = sandbox.workdir / NAME / "dist" / "ami_watch.json"
        self.decisions: dict[str, dict | None] = {}

    def start(self, *extra: str, case: str, wait: int | None = None) -> Pending:
        """Start the watch; extra: ansible-playbook options; wait: --wait seconds."""
        argv = [
            str(REPO / "scripts" / "ami-watch"),
            *(["--wait", str(wait)] if wait else []),
            "-i",
            "inventory/sandbox",
            *self.sandbox.isolation(NAME),
            "-e",
            f"release_bucket={BUCKET}",
            "-e",
            f"ec2_host_ami_ssm_parameter={PARAMETER}",
            "-e",
            "ec2_host_ami_owner=self",
            "-e",
            f"ec2_host_ami_name_pattern={PATTERN}",
            *extra,
        ]
        env = dict(self.sandbox.env, AMI_WATCH_STATE_DIR=str(self.state))
        self.report.unlink(missing_ok=True)
        return self.sandbox.start_command(argv, log_name=f"{NAME}-{case}", state_name=NAME, env=env)

    def finish(self, pending: Pending, case: str) -> Watch:
        run = pending.wait()
        decision = json.loads(self.report.read_text()) if self.report.exists() else None
        self.decisions[case] = decision
        release = None
        if decision and decision.get("release_log"):
            log = Path(decision["release_log"])
            release = Run(decision["release_rc"], log.read_text(), log, 0.0, run.state_dir)
            self.sandbox.runs.append(release.run_id)  # its containers are removed at the end
        LOG_DIR.joinpath(f"sandbox-{NAME}-decisions.json").write_text(
            json.dumps(self.decisions, indent=1)
        )
        return Watch(run, decision, release)

    def watch(self, *extra: str, case: str) -> Watch:
        return self.finish(self.start(*extra, case=case), case)


@pytest.fixture(scope="module")
def watcher(sandbox: Sandbox) -> Watcher:
    sandbox.set_up_bucket(BUCKET)  # once, by its administrator: the watch never creates it
    return Watcher(sandbox)


def register_ami(sandbox: Sandbox, name: str) -> str:
    """A new AMI in moto: a copy of moto's Amazon Linux 2023 image under another name."""
    ec2 = sandbox.client("ec2")
    source = sandbox.client("ssm").get_parameter(Name=AL2023_PARAMETER)["Parameter"]["Value"]
    return ec2.copy_image(Name=name, SourceImageId=source, SourceRegion=sandbox.region)["ImageId"]


def latest(sandbox: Sandbox) -> dict:
    return read_json(sandbox, BUCKET, "releases/latest.json")


def manifest_of(sandbox: Sandbox, version: str) -> dict:
    return read_json(sandbox, BUCKET, f"releases/{version}/manifest.json")


@pytest.fixture(scope="module")
def first_ami(sandbox: Sandbox) -> str:
    return register_ami(sandbox, "r-lambda-watch-al2023-0001")


@pytest.fixture(scope="module")
def no_release_yet(watcher: Watcher, first_ami: str, topic: tuple[str, str]) -> Watch:
    watch = watcher.watch(
        "-e",
        '{"ami_watch_notify": ["log", "sns"]}',
        "-e",
        f"ami_watch_sns_topic_arn={topic[0]}",
        case="no-release-yet",
    )
    watcher.sandbox.timings["ami_watch_first_rebuild"] = watch.run.seconds
    return watch.check()


def test_no_release_yet_rebuilds_and_records_the_ami(
    sandbox: Sandbox, no_release_yet: Watch, first_ami: str
) -> None:
    decision = no_release_yet.decision
    assert decision["rebuild"] is True and decision["outcome"] == "succeeded"
    assert decision["action"] == "rebuild" and decision["release_rc"] == 0
    assert decision["current_ami"] == first_ami
    assert decision["current_ami_source"] == f"name:{PATTERN}"
    assert decision["released_ami"] is None and decision["released_version"] is None
    assert "no release yet" in decision["reason"]
    pointer = latest(sandbox)
    assert pointer["version"] == decision["new_version"]
    manifest = manifest_of(sandbox, pointer["version"])
    assert manifest["status"] == "verified"
    assert manifest["ami"]["id"] == first_ami == decision["new_ami"]
    assert manifest["ami"]["name"] == "r-lambda-watch-al2023-0001"


def test_the_rebuild_ran_the_release_with_the_watchs_settings(
    sandbox: Sandbox, no_release_yet: Watch
) -> None:
    release = no_release_yet.release
    assert release is not None and release.returncode == 0
    # Same platform, bucket and AMI lookup as the watch; forced; its own run id and hosts.
    assert "on the sandbox platform" in release.output
    assert f"s3://{BUCKET}/releases/" in release.output
    assert f"from name:{PATTERN}" in release.output
    assert release.run_id != no_release_yet.decision["watch_run_id"]
    assert sandbox.leftovers(release) == NOTHING_LEFT
    # The settings file handed to the release is gone.
    assert not list((sandbox.workdir / NAME / "state").glob("ami-watch-*.json"))


def test_each_run_leaves_a_log_with_the_decision(watcher: Watcher, no_release_yet: Watch) -> None:
    logs = sorted((watcher.state / "logs").glob("ami-watch-*.log"))
    assert logs, "no run log"
    text = logs[-1].read_text()
    assert "lock taken" in text and "finished" in text
    run_id = no_release_yet.decision["watch_run_id"]
    assert f"AMI watch {run_id} (sandbox): rebuilt and released" in text
    history = (watcher.state / "logs" / "decisions.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["watch_run_id"] == no_release_yet.decision["watch_run_id"]


@pytest.fixture(scope="module")
def same_ami(sandbox: Sandbox, watcher: Watcher, no_release_yet: Watch) -> tuple[Watch, dict, dict]:
    before = s3_snapshot(sandbox, BUCKET)
    watch = watcher.watch(case="same-ami").check()
    return watch, before, s3_snapshot(sandbox, BUCKET)


def test_same_ami_does_not_rebuild(
    same_ami: tuple[Watch, dict, dict], first_ami: str, no_release_yet: Watch
) -> None:
    watch, before, after = same_ami
    decision = watch.decision
    assert decision["rebuild"] is False and decision["outcome"] == "not_needed"
    assert decision["action"] == "none" and decision["release_log"] is None
    assert decision["current_ami"] == decision["released_ami"] == first_ami
    assert decision["released_version"] == no_release_yet.decision["new_version"]
    assert after == before, "a watch with nothing to do wrote to S3"


@pytest.fixture(scope="module")
def second_ami(sandbox: Sandbox, same_ami: tuple[Watch, dict, dict]) -> str:
    return register_ami(sandbox, "r-lambda-watch-al2023-0002")


@pytest.mark.parametrize(
    ("how", "report_only"),
    [
        (("--check",), "check mode"),
        (("-e", "ami_watch_rebuild=false"), "ami_watch_rebuild is false"),
    ],
)
def test_new_ami_is_only_reported_in_check_mode_or_with_rebuild_off(
    sandbox: Sandbox,
    watcher: Watcher,
    second_ami: str,
    first_ami: str,
    how: tuple[str, ...],
    report_only: str,
) -> None:
    before = s3_snapshot(sandbox, BUCKET)
    watch = watcher.watch(*how, case=f"reported-{how[-1].split('=')[0]}").check()
    decision = watch.decision
    assert decision["rebuild"] is True and decision["outcome"] == "reported"
    assert decision["action"] == "report" and decision["report_only"] == report_only
    assert decision["current_ami"] == second_ami and decision["released_ami"] == first_ami
    released = latest(sandbox)["version"]
    assert decision["released_version"] == released
    assert decision["reason"] == (
        f"the AMI changed: release {released} was built on {first_ami}, "
        f"the current one is {second_ami}"
    )
    assert decision["release_log"] is None and decision["new_version"] is None
    assert s3_snapshot(sandbox, BUCKET) == before


@pytest.fixture(scope="module")
def topic(sandbox: Sandbox) -> tuple[str, str]:
    """An SNS topic with an SQS queue subscribed: what the sns notifier sends lands there."""
    sns, sqs = sandbox.client("sns"), sandbox.client("sqs")
    arn = sns.create_topic(Name=TOPIC)["TopicArn"]
    queue = sqs.create_queue(QueueName="r-lambda-watch-notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    return arn, queue


def test_sns_notifier_sends_the_decision(
    sandbox: Sandbox, no_release_yet: Watch, topic: tuple[str, str]
) -> None:
    decision = no_release_yet.decision
    messages = (
        sandbox.client("sqs")
        .receive_message(QueueUrl=topic[1], MaxNumberOfMessages=10, WaitTimeSeconds=2)
        .get("Messages", [])
    )
    assert len(messages) == 1, "one notification per run"
    envelope = json.loads(messages[0]["Body"])
    assert envelope["Subject"] == "r-lambda AMI watch (sandbox): succeeded"
    assert envelope["Message"].startswith(
        f"rebuilt and released {decision['new_version']} on {decision['new_ami']}"
    )
    assert (
        json.loads(envelope["Message"].split("\n\n", 1)[1])["watch_run_id"]
        == decision["watch_run_id"]
    )


def test_a_bad_sns_topic_is_refused_before_anything_runs(
    sandbox: Sandbox, watcher: Watcher, second_ami: str
) -> None:
    before = s3_snapshot(sandbox, BUCKET)
    watch = watcher.watch(
        "-e",
        '{"ami_watch_notify": ["sns"]}',
        "-e",
        "ami_watch_sns_topic_arn=r-lambda-watch",
        case="bad-topic",
    )
    assert watch.run.returncode != 0 and watch.decision is None
    assert "ami_watch_sns_topic_arn must be an SNS topic ARN" in watch.run.output
    assert s3_snapshot(sandbox, BUCKET) == before


@pytest.fixture(scope="module")
def failed_rebuild(
    sandbox: Sandbox, watcher: Watcher, second_ami: str
) -> tuple[Watch, str, dict, dict]:
    """The SSM parameter now names a third AMI; the rebuild it triggers cannot launch."""
    third = register_ami(sandbox, "r-lambda-watch-other-0003")  # not matched by the pattern
    sandbox.client("ssm").put_parameter(Name=PARAMETER, Value=third, Type="String", Overwrite=True)
    before = s3_snapshot(sandbox, BUCKET)
    pointer = latest(sandbox)
    watch = watcher.watch(
        "-e",
        '{"ec2_host_instance_types": {"build": "t2.no-such-type", "test": "t2.micro"}}',
        case="failed-rebuild",
    )
    return watch, third, before, pointer


def test_changed_ssm_parameter_triggers_a_rebuild(
    failed_rebuild: tuple[Watch, str, dict, dict], first_ami: str
) -> None:
    watch, third, _, pointer = failed_rebuild
    decision = watch.decision
    assert decision["current_ami"] == third
    assert decision["current_ami_source"] == f"ssm:{PARAMETER}"
    assert decision["released_ami"] == first_ami and decision["rebuild"] is True
    assert decision["action"] == "rebuild"
    assert decision["released_version"] == pointer["version"]


def test_failed_rebuild_is_reported_and_leaves_latest_alone(
    sandbox: Sandbox, failed_rebuild: tuple[Watch, str, dict, dict]
) -> None:
    watch, _, before, pointer = failed_rebuild
    decision = watch.decision
    assert watch.run.returncode != 0, "a failed rebuild must fail the watch"
    assert decision["outcome"] == "failed" and decision["release_rc"] != 0
    assert decision["new_version"] is None
    assert decision["summary"].startswith(
        f"rebuild FAILED, latest.json still points to {pointer['version']}"
    )
    assert "t2.no-such-type" in watch.release.output
    assert "FAILED (exit" in watch.run.output
    assert latest(sandbox) == pointer
    assert s3_snapshot(sandbox, BUCKET) == before
    assert sandbox.leftovers(watch.release) == NOTHING_LEFT


def wait_for(path: Path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} did not say {text!r} within {timeout} s")


def test_a_second_watch_skips_or_waits_while_one_runs(
    sandbox: Sandbox, watcher: Watcher, failed_rebuild: tuple[Watch, str, dict, dict]
) -> None:
    logs = watcher.state / "logs"
    known = set(logs.glob("ami-watch-*.log"))
    first = watcher.start("--check", case="concurrent-first")
    wait_for_new = time.monotonic() + 60
    while not (set(logs.glob("ami-watch-*.log")) - known) and time.monotonic() < wait_for_new:
        time.sleep(0.2)
    (first_log,) = set(logs.glob("ami-watch-*.log")) - known
    wait_for(first_log, "lock taken")
    skipped = watcher.start("--check", case="concurrent-skipped")
    waiting = watcher.start("--check", case="concurrent-waiting", wait=600)
    skipped_run = skipped.wait()
    assert skipped_run.returncode == 0
    assert "skipped: another AMI watch holds" in skipped_run.output
    assert first.command.proc.poll() is None, "the first watch should still hold the lock"
    first_run = first.wait()
    waiting_run = waiting.wait()
    assert first_run.returncode == 0 and waiting_run.returncode == 0
    assert "lock taken" in waiting_run.output and "finished" in waiting_run.output
    # The waiting one took the lock only after the first had finished.
    stamp = re.compile(r"^(\S+Z) ami-watch\[\d+\]: (?:lock taken|finished)", re.M)
    first_end = stamp.findall(first_run.output)[-1]
    waiting_start = stamp.findall(waiting_run.output)[0]
    assert waiting_start >= first_end
    assert json.loads(watcher.report.read_text())["outcome"] == "reported"
