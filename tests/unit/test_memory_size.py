"""The Lambda memory a release records and a deploy uses.

package_test's filter picks the smallest Lambda size whose margin share holds the clean
host's peak RSS, and its memory gate fails a release whose package needs more than the
target; the deploy uses the larger of its setting and the recorded size. The Ansible
tasks are run for real (ansible-playbook on localhost, the collection from this checkout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from module_loading import load

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
package_test_filters = load("package_test_filters", REPO / "plugins/filter/package_test_filters.py")
deploy_filters = load("deploy_filters_memory", REPO / "plugins/filter/deploy_filters.py")
memory = package_test_filters.package_test_memory


@pytest.mark.parametrize(
    ("peak", "size"),
    [
        (46.2, 128),
        (89.6, 128),  # exactly 70 % of 128
        (89.7, 256),
        (179.2, 256),
        (179.3, 512),
        (700.0, 1024),
        (5734.4, 8192),
        (7168.0, 10240),  # 70 % of the largest size
    ],
)
def test_the_smallest_lambda_size_holding_the_peak_with_the_margin_is_chosen(
    peak: float, size: int
) -> None:
    chosen = memory(peak, 0.7, 10240)
    assert chosen["memory_mb"] == size
    assert chosen["fits"] is True


def test_a_peak_no_lambda_size_holds_with_the_margin_has_no_size() -> None:
    assert memory(7168.1, 0.7, 10240) == {
        "peak_rss_mb": 7168.1,
        "margin": 0.7,
        "target_mb": 10240,
        "target_limit_mb": 7168.0,
        "memory_mb": None,
        "fits": False,
    }


def test_a_package_needing_more_than_the_target_does_not_fit() -> None:
    chosen = memory("95.3", "0.7", "128")  # Ansible may hand the figures over as text
    assert (chosen["memory_mb"], chosen["fits"], chosen["target_limit_mb"]) == (256, False, 89.6)
    assert memory(95.3, 0.7, 256)["fits"] is True
    assert memory(95.3, 0.8, 128) == {
        "peak_rss_mb": 95.3,
        "margin": 0.8,
        "target_mb": 128,
        "target_limit_mb": 102.4,
        "memory_mb": 128,
        "fits": True,
    }


@pytest.mark.parametrize("peak", [None, "", "None", 0])
def test_an_unmeasured_peak_never_fits(peak: Any) -> None:
    chosen = memory(peak, 0.7, 128)
    assert (chosen["peak_rss_mb"], chosen["memory_mb"], chosen["fits"]) == (None, None, False)


@pytest.mark.parametrize(("margin", "target"), [(0, 128), (1.2, 128), (0.7, 64), (0.7, 20000)])
def test_a_margin_or_target_out_of_range_is_refused_naming_the_setting(
    margin: float, target: int
) -> None:
    with pytest.raises(AnsibleFilterError, match=r"package_test_memory_(margin|mb) must be"):
        memory(50, margin, target)


@pytest.mark.parametrize(
    ("configured", "manifest", "used"),
    [
        (128, {"memory": {"memory_mb": 256}}, 256),
        ("512", {"memory": {"memory_mb": 256}}, 512),
        (128, {"memory": {"memory_mb": 128}}, 128),
        (1024, {}, 1024),  # a release made before the memory was recorded
        (128, {"memory": None}, 128),
    ],
)
def test_the_deploy_uses_the_larger_of_its_setting_and_the_recorded_size(
    configured: Any, manifest: dict, used: int
) -> None:
    assert deploy_filters.deploy_memory_size(configured, manifest) == used


# ----------------------------------------------------------------- the tasks, for real

PLAYBOOK = """
- name: Run the memory tasks of package_test and deploy on made-up results
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Stand in for the clean-host test's results
      ansible.builtin.set_fact:
        package_test_results: {runtime_client: {peak_rss_mb: "%(peak)s"}}
    - name: Record the memory and gate the release
      ansible.builtin.include_role:
        name: r_lambda.release.package_test
        tasks_from: memory
    - name: Stand in for the promoted manifest
      ansible.builtin.set_fact:
        deploy_manifest: {memory: "{{ package_test_results.memory }}"}
        deploy_release_version: v1
    - name: Choose the function's memory
      ansible.builtin.include_role:
        name: r_lambda.release.deploy
        tasks_from: memory
    - name: Write what was chosen
      ansible.builtin.copy:
        dest: "%(out)s"
        content: "{{ {'memory': package_test_results.memory,
                      'function_memory_mb': deploy_function_memory_mb | int} | to_json }}"
        mode: "0644"
"""


def run_memory_tasks(
    tmp_path: Path, peak: Any, *extra: str
) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "chosen.json"
    playbook = tmp_path / "memory.yml"
    playbook.write_text(PLAYBOOK % {"peak": peak, "out": out})
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    done = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            *("-i", "localhost,", "-c", "local", str(playbook)),
            *("-e", f"ansible_python_interpreter={sys.executable}", *extra),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done, out


def test_release_records_the_size_and_the_deploy_raises_its_memory_to_it(tmp_path: Path) -> None:
    done, out = run_memory_tasks(
        tmp_path, 150.0, "-e", "package_test_memory_mb=512", "-e", "deploy_memory_mb=128"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    chosen = json.loads(out.read_text())
    assert chosen["memory"]["memory_mb"] == 256
    assert chosen["function_memory_mb"] == 256
    assert "Function memory 256 MB: raised from deploy_memory_mb 128 MB" in done.stdout
    assert "release v1 records 256 MB (peak RSS 150.0 MB on the clean host" in done.stdout


def test_deploy_keeps_a_larger_setting(tmp_path: Path) -> None:
    done, out = run_memory_tasks(tmp_path, 46.2, "-e", "deploy_memory_mb=1024")
    assert done.returncode == 0, done.stdout + done.stderr
    chosen = json.loads(out.read_text())
    assert (chosen["memory"]["memory_mb"], chosen["function_memory_mb"]) == (128, 1024)


def test_a_package_over_the_target_memory_fails_naming_the_figures(tmp_path: Path) -> None:
    done, out = run_memory_tasks(tmp_path, 95.3)
    assert done.returncode != 0
    assert not out.exists()
    message = " ".join(done.stdout.split())
    assert (
        "The package does not fit the target memory: its peak RSS at the first predictions "
        "through Lambda's runtime client was 95.3 MB, over 70.0 % (package_test_memory_margin) "
        "of package_test_memory_mb=128 MB, i.e. 89.6 MB. It needs 256 MB: release with "
        "-e package_test_memory_mb=256"
    ) in message
