"""Every file the project downloads or installs is checked against a sha256 the repository
holds (issue 23): this test fails the build, naming the file and line, when a task or a
script of roles/, playbooks/ or scripts/ downloads or installs without a hash pin.

What counts:
- pip (``pip``, ``pip3``, ``python -m pip``, ``uv pip``, bootstrap's ``pip_``) installing
  or downloading: the same task or command line carries ``--require-hashes``;
- Ansible's pip module: its arguments carry ``--require-hashes``;
- ``get_url``: it has a ``checksum:``;
- ``cache_entry`` downloads: each has a ``sha256``;
- ``curl`` and ``wget``: never (use get_url with a checksum, or cache_entry's downloads).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("roles", "playbooks", "scripts")
PIP = re.compile(r"^(?:pip3?|pip_|pip3?\.\d+)$")
VERBS = {"install", "download", "wheel"}
FETCHERS = re.compile(r"(?:^|[\s;&|(`'\"])(curl|wget)(?=\s|$)")
GET_URL = {"get_url", "ansible.builtin.get_url", "ansible.legacy.get_url"}
PIP_MODULE = {"pip", "ansible.builtin.pip", "ansible.legacy.pip"}
CACHE_ENTRY = {"r_lambda.release.cache_entry", "cache_entry"}
TASK_LISTS = {"block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"}
# Keys that make a top-level mapping a task or a play rather than a vars file.
MODULE_HINTS = {"name", "hosts", "import_playbook"} | TASK_LISTS


class LineLoader(yaml.SafeLoader):
    """A YAML loader that records the line of every mapping (as key __line__)."""


def _mapping_with_line(loader: LineLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)
# Ansible's tags (!unsafe, !vault) are plain strings here.
LineLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node)
                                 if isinstance(node, yaml.ScalarNode) else None)


def strings(value: object, skip: frozenset[str] = frozenset({"name", "__line__"})) -> Iterator[str]:
    """Every string inside a task, but its name (which may say "download" freely)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in skip:
                yield str(key)
                yield from strings(item, skip)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item, skip)


def runs_pip(text: str) -> bool:
    """pip or uv pip followed (within a few words) by install, download or wheel."""
    words = re.split(r"[\s'\",\[\]]+", text)
    for index, word in enumerate(words):
        if PIP.match(word.rsplit("/", 1)[-1]) and VERBS & set(words[index + 1:index + 4]):
            return True
    return False


def task_problems(task: dict) -> list[str]:
    text = " ".join(strings(task))
    problems = []
    if runs_pip(text) and "--require-hashes" not in text:
        problems.append("pip installs or downloads without --require-hashes")
    for key in PIP_MODULE & task.keys():
        if "--require-hashes" not in " ".join(strings(task[key])):
            problems.append(f"{key} without --require-hashes in its arguments")
    for key in GET_URL & task.keys():
        if not isinstance(task[key], dict) or not task[key].get("checksum"):
            problems.append(f"{key} without checksum:")
    for key in CACHE_ENTRY & task.keys():
        args = task[key] if isinstance(task[key], dict) else {}
        downloads = args.get("downloads") or []
        if isinstance(downloads, list) and any(not (d or {}).get("sha256") for d in downloads):
            problems.append(f"{key} downloads a file without its sha256")
    if match := FETCHERS.search(text):
        problems.append(f"{match[1]} downloads with no hash pin (use get_url with checksum:)")
    return problems


def yaml_problems(path: Path) -> Iterator[tuple[int, str]]:
    try:
        documents = list(yaml.load_all(path.read_text(), Loader=LineLoader))
    except yaml.YAMLError:
        return
    def walk(node: object) -> Iterator[tuple[int, str]]:
        """A task is checked whole (its arguments are not tasks); a block's tasks one by one."""
        if isinstance(node, list):
            for item in node:
                yield from walk(item)
            return
        if not isinstance(node, dict):
            return
        nested = [value for key, value in node.items()
                  if key in TASK_LISTS and isinstance(value, list)]
        if nested:
            for tasks in nested:
                yield from walk(tasks)
        else:
            for problem in task_problems(node):
                yield node["__line__"], problem

    for document in documents:
        if isinstance(document, dict) and not (MODULE_HINTS & document.keys()):  # a vars file
            for key, value in document.items():
                if key != "__line__":
                    line = value["__line__"] if isinstance(value, dict) else document["__line__"]
                    yield from ((line, p) for p in task_problems({key: value}))
        else:
            yield from walk(document)


def shell_problems(path: Path) -> Iterator[tuple[int, str]]:
    lines = path.read_text(errors="replace").splitlines()
    start, joined = 0, ""
    for number, line in enumerate(lines, 1):
        if not joined:
            start = number
        code = line.split(" #")[0] if not line.lstrip().startswith("#") else ""
        joined += code.rstrip("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        if runs_pip(joined) and "--require-hashes" not in joined:
            yield start, "pip installs or downloads without --require-hashes"
        if match := FETCHERS.search(joined):
            yield start, f"{match[1]} downloads with no hash pin"
        joined = ""


def is_shell(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    if path.suffix:
        return False
    try:
        first = path.read_text(errors="replace").split("\n", 1)[0]
    except OSError:
        return False
    return first.startswith("#!") and ("sh" in first.rsplit("/", 1)[-1])


def scanned_files(root: Path) -> Iterator[Path]:
    for top in SCANNED:
        for path in sorted((root / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                yield path


def problems_under(root: Path) -> list[str]:
    found = []
    for path in scanned_files(root):
        if path.suffix in (".yml", ".yaml"):
            checks = yaml_problems(path)
        elif is_shell(path):
            checks = shell_problems(path)
        else:
            continue
        found += [f"{path.relative_to(root)}:{line}: {problem}" for line, problem in checks]
    return found


def test_no_task_or_script_downloads_or_installs_without_a_hash_pin() -> None:
    assert problems_under(REPO) == []


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("roles/r/tasks/main.yml",
     "- name: Install\n  ansible.builtin.command:\n"
     "    argv: [python3, -m, pip, install, rpy2==3.6.9]\n",
     "roles/r/tasks/main.yml:1: pip installs or downloads without --require-hashes"),
    ("roles/r/tasks/main.yml",
     "- name: Download\n  block:\n    - name: Fetch R\n      ansible.builtin.get_url:\n"
     "        url: https://example.org/R.tar.gz\n        dest: /tmp/R.tar.gz\n",
     "roles/r/tasks/main.yml:3: ansible.builtin.get_url without checksum:"),
    ("roles/r/tasks/main.yml",
     "- name: Fetch\n  ansible.builtin.shell: curl -sSfo /tmp/x https://example.org/x\n",
     "roles/r/tasks/main.yml:1: curl downloads with no hash pin (use get_url with checksum:)"),
    ("roles/r/tasks/main.yml",
     "- name: Fill\n  r_lambda.release.cache_entry:\n    path: /c/x\n    state: present\n"
     "    downloads: [{url: 'https://example.org/x.tar.gz'}]\n",
     "roles/r/tasks/main.yml:1: r_lambda.release.cache_entry downloads a file without its sha256"),
    ("roles/r/vars/main.yml",
     "__r_pip: [python3, -m, pip, install, --no-index]\n",
     "roles/r/vars/main.yml:1: pip installs or downloads without --require-hashes"),
    ("scripts/setup.sh",
     "#!/bin/sh\n# pip install is fine in a comment\n\"$venv/bin/pip\" install -q \\\n  pip uv\n",
     "scripts/setup.sh:3: pip installs or downloads without --require-hashes"),
    ("scripts/setup.sh", "#!/bin/sh\nuv pip install -r requirements.txt\n",
     "scripts/setup.sh:2: pip installs or downloads without --require-hashes"),
])
def test_the_scan_names_the_file_and_line_of_an_unpinned_download(
        tmp_path: Path, name: str, text: str, problem: str) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert problems_under(tmp_path) == [problem]


@pytest.mark.parametrize(("name", "text"), [
    ("roles/r/tasks/main.yml",
     "- name: Install\n  ansible.builtin.command:\n"
     "    argv: [python3, -m, pip, install, --require-hashes, -r, lock.txt]\n"),
    ("roles/r/tasks/main.yml",
     "- name: Fetch R\n  ansible.builtin.get_url:\n    url: https://example.org/R.tar.gz\n"
     "    dest: /tmp/R.tar.gz\n    checksum: 'sha256:{{ r_sha256 }}'\n"),
    ("scripts/setup.sh",
     "#!/bin/sh\n\"$venv/bin/pip\" install -q --require-hashes \\\n  -r lock\n"),
    ("roles/r/tasks/main.yml",
     "- name: Download rpy2 with pip, say the name\n  ansible.builtin.debug:\n    msg: hello\n"),
])
def test_a_hash_pinned_download_passes_the_scan(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert problems_under(tmp_path) == []
