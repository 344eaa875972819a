"""Role ec2_host against the sandbox's moto server, without releases: two runs at once
never share or remove each other's resources, and the reaper removes only what is old."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
from collections.abc import Iterator

import pytest
from release_runs import REPO, VENV_BIN
from sandbox_support import AL2023_PARAMETER, PROJECT, Sandbox

pytestmark = pytest.mark.slow

NONE = {"instances": [], "key_pairs": [], "security_groups": []}
GONE = {"instance": False, "key": False, "group": False}


def run_resources(sandbox: Sandbox, run_id: str) -> dict[str, list[str]]:
    ec2 = sandbox.client("ec2")
    run = [{"Name": "tag:run_id", "Values": [run_id]}]
    reservations = ec2.describe_instances(
        Filters=[*run, {"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return {
        "instances": sorted(
            i["InstanceId"] for r in reservations["Reservations"] for i in r["Instances"]
        ),
        "key_pairs": [k["KeyName"] for k in ec2.describe_key_pairs(Filters=run)["KeyPairs"]],
        "security_groups": [
            g["GroupName"] for g in ec2.describe_security_groups(Filters=run)["SecurityGroups"]
        ],
    }


def run_hosts(sandbox: Sandbox, run_id: str, state: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(VENV_BIN / "ansible-playbook"),
            "tests/sandbox/playbooks/run_hosts.yml",
            "-i",
            "inventory/sandbox",
            "-e",
            f"run_id={run_id}",
            "-e",
            f"run_state={state}",
            "-e",
            f"run_state_dir={sandbox.workdir / 'runs'}",
        ],
        cwd=REPO,
        env=sandbox.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen) -> str:
    output = proc.communicate()[0]
    assert proc.returncode == 0, output[-3000:]
    return output


def test_two_runs_at_once_do_not_collide(sandbox: Sandbox) -> None:
    first, second = "rcollide-aaaaaa", "rcollide-bbbbbb"
    finish_both = [run_hosts(sandbox, first, "present"), run_hosts(sandbox, second, "present")]
    for proc in finish_both:
        finish(proc)
    for run_id in (first, second):
        resources = run_resources(sandbox, run_id)
        assert len(resources["instances"]) == 2
        assert resources["key_pairs"] == [f"{PROJECT}-{run_id}"]
        assert resources["security_groups"] == [f"{PROJECT}-{run_id}"]
        key = sandbox.workdir / "runs" / run_id / "ssh_key"
        assert key.stat().st_mode & 0o777 == 0o600

    finish(run_hosts(sandbox, first, "absent"))

    assert run_resources(sandbox, first) == NONE
    assert not (sandbox.workdir / "runs" / first).exists()
    untouched = run_resources(sandbox, second)
    assert len(untouched["instances"]) == 2
    assert untouched["key_pairs"] and untouched["security_groups"]

    finish(run_hosts(sandbox, second, "absent"))
    assert run_resources(sandbox, second) == NONE


def stamp(hours_ago: float) -> str:
    moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=hours_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def planted(sandbox: Sandbox) -> Iterator[dict[str, dict[str, str]]]:
    """Resources as interrupted runs leave them: tagged project=r-lambda with a created_at
    tag a day old (stale) or a minute old (fresh); one old key pair of another project; one
    security group of this project without created_at."""
    ec2 = sandbox.client("ec2")
    ami = sandbox.client("ssm").get_parameter(Name=AL2023_PARAMETER)["Parameter"]["Value"]
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    plants: dict[str, dict[str, str]] = {}
    for name, project, created in [
        ("reap-stale", PROJECT, stamp(24)),
        ("reap-fresh", PROJECT, stamp(0.02)),
        ("reap-foreign", "another-project", stamp(24)),
        ("reap-undated", PROJECT, ""),
    ]:
        tags = [{"Key": "project", "Value": project}, {"Key": "run_id", "Value": name}]
        tags += [{"Key": "created_at", "Value": created}] if created else []
        key = f"{PROJECT}-{name}"
        ec2.create_key_pair(
            KeyName=key, TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags}]
        )
        group = ec2.create_security_group(
            GroupName=key,
            Description="planted",
            VpcId=vpc["VpcId"],
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
        )["GroupId"]
        instance = ec2.run_instances(
            ImageId=ami,
            InstanceType="t2.micro",
            MinCount=1,
            MaxCount=1,
            KeyName=key,
            SecurityGroupIds=[group],
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]["InstanceId"]
        plants[name] = {"key": key, "group": group, "instance": instance}
    yield plants
    for plant in plants.values():
        ec2.terminate_instances(InstanceIds=[plant["instance"]])
        for call, kwargs in (
            (ec2.delete_security_group, {"GroupId": plant["group"]}),
            (ec2.delete_key_pair, {"KeyName": plant["key"]}),
        ):
            with contextlib.suppress(ec2.exceptions.ClientError):
                call(**kwargs)


def alive(sandbox: Sandbox, plant: dict[str, str]) -> dict[str, bool]:
    ec2 = sandbox.client("ec2")
    state = ec2.describe_instances(InstanceIds=[plant["instance"]])["Reservations"][0]["Instances"][
        0
    ]["State"]["Name"]
    keys = {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    groups = {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    return {
        "instance": state == "running",
        "key": plant["key"] in keys,
        "group": plant["group"] in groups,
    }


def test_reaper_removes_stale_resources_and_spares_fresh_ones(
    sandbox: Sandbox, planted: dict[str, dict[str, str]]
) -> None:
    everything = {"instance": True, "key": True, "group": True}
    dry = sandbox.playbook("playbooks/reap.yml", name="reap-dry").check()
    assert "Dry run: would remove" in dry.output
    assert planted["reap-stale"]["instance"] in dry.output
    assert f"{PROJECT}-reap-stale" in dry.output
    assert f"{PROJECT}-reap-fresh" not in dry.output.split("Dry run: would remove", 1)[1][:2000]
    assert all(alive(sandbox, plant) == everything for plant in planted.values())

    sandbox.playbook("playbooks/reap.yml", "-e", "reap_apply=true", name="reap-apply").check()

    assert alive(sandbox, planted["reap-stale"]) == GONE
    assert alive(sandbox, planted["reap-fresh"]) == everything
    assert alive(sandbox, planted["reap-foreign"]) == everything
    # No created_at: the instance and key pair fall back on their launch and creation
    # times (just now: spared); the security group has no time at all and is left alone.
    assert alive(sandbox, planted["reap-undated"]) == everything


def test_reaper_removes_one_killed_run_whatever_its_age(
    sandbox: Sandbox, planted: dict[str, dict[str, str]]
) -> None:
    everything = {"instance": True, "key": True, "group": True}
    sandbox.playbook(
        "playbooks/reap.yml",
        "-e",
        "reap_apply=true",
        "-e",
        "reap_run_id=reap-fresh",
        name="reap-run",
    ).check()

    assert alive(sandbox, planted["reap-fresh"]) == GONE
    for other in ("reap-stale", "reap-foreign", "reap-undated"):
        assert alive(sandbox, planted[other]) == everything, other
