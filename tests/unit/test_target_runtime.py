"""Every platform targets a Lambda runtime that is open today, and the aws path parses.

What Ansible itself resolves is asked of Ansible (ansible-inventory, --syntax-check), not
re-derived from the YAML, so a group_vars file that overrides the default is caught.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLATFORMS = ("local", "sandbox", "aws")
ENV = {
    **os.environ,
    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
}


def release_defaults() -> dict:
    return yaml.safe_load((REPO / "roles/release_plan/defaults/main.yml").read_text())


def resolved(template: str, **settings: object) -> str:
    """A role default as Jinja renders it, given these release-wide settings."""
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return environment.from_string(template).render(settings)


def inventory_vars(platform: str) -> dict:
    out = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", f"inventory/{platform}", "--host", "localhost"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def test_the_default_target_is_lambdas_python_3_13_on_amazon_linux_2023() -> None:
    defaults = release_defaults()
    assert resolved(defaults["release_plan_target_runtime"]) == "python3.13"
    assert defaults["release_plan_lambda_runtimes"]["python3.13"] == {
        "os": "Amazon Linux 2023",
        "glibc": "2.34",
        "python": "3.13",
    }


def test_only_runtimes_open_to_new_functions_are_offered() -> None:
    runtimes = release_defaults()["release_plan_lambda_runtimes"]
    assert sorted(runtimes) == ["python3.12", "python3.13", "python3.14"]
    assert {r["glibc"] for r in runtimes.values()} == {"2.34"}


def test_the_plan_reads_the_release_wide_settings_a_user_sets() -> None:
    defaults = release_defaults()
    runtime = defaults["release_plan_target_runtime"]
    assert resolved(runtime, release_target_runtime="python3.12") == "python3.12"
    assert resolved(defaults["release_plan_bucket"], release_bucket="b") == "b"
    assert resolved(defaults["release_plan_bucket"]) == "r-lambda-releases"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_no_inventory_moves_the_target_off_the_default(platform: str) -> None:
    hostvars = inventory_vars(platform)
    assert hostvars["release_platform"] == platform
    assert "release_target_runtime" not in hostvars
    assert "release_glibc_max" not in hostvars


def test_the_local_lambda_inventory_is_folded_into_the_default() -> None:
    assert sorted(p.name for p in (REPO / "inventory").iterdir()) == list(sorted(PLATFORMS))


# The clean host's cap: the memory the release targets (package_test_memory_mb), 128 MB
# unless given.
TARGET_MEMORY = "{{ package_test_memory_mb | default(128) }}"


def test_containers_build_on_bullseye_and_test_on_trixie_under_the_target_memory() -> None:
    local = yaml.safe_load((REPO / "roles/local_hosts/defaults/main.yml").read_text())
    hosts = {h["name"]: h for h in local["local_hosts_hosts"]}
    assert (hosts["build"]["suite"], hosts["test"]["suite"]) == ("bullseye", "trixie")
    assert hosts["test"]["memory"] == f"{TARGET_MEMORY}m" and "memory" not in hosts["build"]
    sandbox = yaml.safe_load((REPO / "roles/sandbox_hosts/defaults/main.yml").read_text())
    assert sandbox["sandbox_hosts_suites"] == {"build": "bullseye", "test": "trixie"}
    assert sandbox["sandbox_hosts_memory"] == {"test": f"{TARGET_MEMORY}m"}
    package_test = yaml.safe_load((REPO / "roles/package_test/defaults/main.yml").read_text())
    assert package_test["package_test_memory_mb"] == 128


def test_the_aws_test_host_gets_the_runtimes_python_and_a_scope_of_the_target_memory() -> None:
    aws = yaml.safe_load((REPO / "inventory/aws/group_vars/all/platform.yml").read_text())
    runtime_python = "python{{ hostvars['localhost'].release_run_record.runtime.python }}"
    assert aws["package_test_packages"] == [runtime_python]
    limit = aws["package_test_limit_command"]
    assert (
        limit[:3] == ["systemd-run", "--quiet", "--scope"]
        and f"MemoryMax={TARGET_MEMORY}M" in limit
    )


@pytest.mark.parametrize("role", ["r_runtime", "target_python"])
def test_amazon_linux_has_its_dnf_lists(role: str) -> None:
    amazon = yaml.safe_load((REPO / f"roles/{role}/vars/Amazon.yml").read_text())
    names = [v for value in amazon.values() if isinstance(value, list) for v in value]
    assert names, f"roles/{role}/vars/Amazon.yml lists no package"
    assert not any(n.endswith("-dev") for n in names), "apt names in the dnf list"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_release_playbook_parses_for_each_platform(platform: str) -> None:
    done = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "--syntax-check",
            "-i",
            f"inventory/{platform}",
            "playbooks/release.yml",
        ],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
