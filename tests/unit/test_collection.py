"""The repository as the collection r_lambda.release (galaxy.yml, README "Install as a collection").

The collection is built into tmp_path, installed there with --no-deps (its dependencies are
the collections of the pinned ansible package) and used from a folder with an empty
ansible.cfg, so nothing of the checkout (its ansible.cfg, roles_path, collections/ link)
helps it:

- every playbook under playbooks/ passes --syntax-check by its fully qualified name;
- a playbook inside the collection includes a role by its short name (and that role calls
  the collection's module by FQCN), and a user's playbook calls the collection's role,
  module and filter by FQCN (roles' own library/ and filter_plugins/ are not loaded from a
  collection's roles, hence plugins/; no role of the checkout keeps either);
- ansible-doc lists every role with the entry points of its meta/argument_specs.yml, and
  every module, filter and callback under plugins/;
- execution-environment.yml pins what requirements.lock and the pinned ansible package
  pin, and `ansible-builder create` writes its build context (skipped, saying why, where
  ansible-builder is not installed). Building the image is not tested: it pulls the base
  image and packages from registries this project's machines cannot reach.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAMESPACE, NAME = "r_lambda", "release"
FQCN = f"{NAMESPACE}.{NAME}"
PLAYBOOKS = sorted(p.stem for p in (REPO / "playbooks").glob("*.yml"))
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py"))
FILTER_FILES = sorted((REPO / "plugins" / "filter").glob("*.py"))
CALLBACKS = sorted(p.stem for p in (REPO / "plugins" / "callback").glob("*.py"))
# Collections named in a task, a module_defaults group or a callback setting.
COLLECTION_USE = re.compile(
    r"\b(amazon\.aws|community\.[a-z_]+|containers\.podman|ansible\.posix)\."
)
MAX_ARTIFACT_BYTES = 1024 * 1024


@dataclass
class Installed:
    artifact: Path
    root: Path  # ansible_collections/r_lambda/release
    env: dict[str, str]
    cwd: Path


def tool(name: str) -> str:
    """A command of the virtualenv running the tests, else the one on PATH."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} is neither in {BIN} nor on PATH (scripts/bootstrap.sh installs it)"
    return found


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    tmp = tmp_path_factory.mktemp("collection")
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    (cwd / "ansible.cfg").write_text("[defaults]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(cwd / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(tmp / "collections"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    built = run(
        [tool("ansible-galaxy"), "collection", "build", "--output-path", str(tmp), str(REPO)],
        env,
        cwd,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [artifact] = tmp.glob(f"{NAMESPACE}-{NAME}-*.tar.gz")
    installing = run(
        [
            tool("ansible-galaxy"),
            "collection",
            "install",
            "--no-deps",
            "-p",
            str(tmp / "collections"),
            str(artifact),
        ],
        env,
        cwd,
    )
    assert installing.returncode == 0, installing.stdout + installing.stderr
    root = tmp / "collections" / "ansible_collections" / NAMESPACE / NAME
    yield Installed(artifact, root, env, cwd)


def test_the_artifact_holds_the_collection_and_not_the_checkouts_own_files(
    installed: Installed,
) -> None:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert installed.artifact.name == f"{NAMESPACE}-{NAME}-{galaxy['version']}.tar.gz"
    assert installed.artifact.stat().st_size < MAX_ARTIFACT_BYTES
    with tarfile.open(installed.artifact) as tar:
        names = set(tar.getnames())
    tops = {n.split("/")[0] for n in names}
    for kept in (
        "roles",
        "playbooks",
        "plugins",
        "meta",
        "handler",
        "inventory",
        "iam",
        "docs",
        "MANIFEST.json",
        "FILES.json",
        "execution-environment.yml",
        "CHANGELOG.md",
    ):
        assert kept in tops, kept
    for left_out in (
        "tests",
        "molecule",
        ".state",
        ".venv",
        "dist",
        "collections",
        "scripts",
        "deploy",
        "podman",
        "tools",
        ".github",
        ".ci",
        "Makefile",
        "requirements.lock",
        "ansible.cfg",
    ):
        assert left_out not in tops, left_out
    for role in ROLES:
        assert f"roles/{role}/meta/argument_specs.yml" in names, role
    # What the roles use from outside roles/: the handler lambda_package zips, the file the
    # bench's baseline play adds, the playbooks' group_vars, the tools they pack from src/.
    assert {
        "handler/handler.py",
        "handler/model/binary.csv",
        "bench/handler_2017.py",
        "playbooks/group_vars/all/package.yml",
        "src/lambda_invoke/__init__.py",
        "src/lambda_invoke/__main__.py",
        "src/lambda_pkgtool/__init__.py",
        "src/lambda_pkgtool/__main__.py",
    } <= names
    assert {f"plugins/modules/{m}.py" for m in MODULES} <= names
    assert {f"plugins/filter/{p.name}" for p in FILTER_FILES} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # The local function's front is a package the role packs and runs (python3 <file>.pyz).
    assert {
        f"src/local_function/{p.name}" for p in (REPO / "src/local_function").glob("*.py")
    } <= names
    # Plugins live in plugins/ only: a collection's roles do not load their own.
    assert not [n for n in names if re.search(r"^roles/[^/]+/(library|filter_plugins)/", n)]


def test_every_playbook_passes_syntax_check_by_its_fully_qualified_name(
    installed: Installed,
) -> None:
    names = [f"{FQCN}.{p}" for p in PLAYBOOKS]
    checked = run(
        [tool("ansible-playbook"), "--syntax-check", "-i", "localhost,", *names],
        installed.env,
        installed.cwd,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for playbook in PLAYBOOKS:
        assert f"playbook: {installed.root}/playbooks/{playbook}.yml" in checked.stdout


def test_short_role_names_modules_and_filters_resolve_from_the_installed_collection(
    installed: Installed, tmp_path: Path
) -> None:
    """The collection's playbooks include their roles by short name (include_role:
    release_run): a playbook run from the collection finds them there, and the role's own
    call of the collection's module (release_runs, by FQCN) resolves. A user's playbook
    reaches the role, the module and the filter by FQCN."""
    (tmp_path / "runs").mkdir()
    inside = installed.root / "playbooks" / "test_probe.yml"
    inside.write_text(
        "- name: Include a role by its short name, as the collection's playbooks do\n"
        "  hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        "    - name: The run record's phase mark\n"
        "      ansible.builtin.include_role: {name: release_run}\n"
        "      vars: {release_run_phase: plan}\n"
        "    - name: The role's module, by FQCN inside the role\n"
        "      ansible.builtin.include_role: {name: release_run}\n"
        f"      vars: {{release_run_action: dead, release_run_state_dir: '{tmp_path}'}}\n"
        "    - name: Show the mark and the dead runs\n"
        "      ansible.builtin.debug:\n"
        "        msg: 'marks={{ release_run_record.marks | list }} dead={{ release_run_dead }}'\n"
    )
    outside = tmp_path / "user.yml"
    outside.write_text(
        "- name: Use the collection's role and plugins by FQCN\n"
        "  hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        "    - name: The run record's role\n"
        f"      ansible.builtin.include_role: {{name: {FQCN}.release_run}}\n"
        "      vars: {release_run_phase: plan}\n"
        "    - name: The run record's module\n"
        f"      {FQCN}.release_runs: {{action: dead, runs_dir: '{tmp_path}/runs', run_id: x}}\n"
        "      register: dead\n"
        "    - name: The release_promote role's filter\n"
        "      ansible.builtin.debug:\n"
        f"        msg: \"plan={{{{ ({{'plan': 1.0, 'end': 3.5}} | {FQCN}.phase_seconds).plan }}}}"
        ' marks={{ release_run_record.marks | list }} dead={{ dead.runs | length }}"\n'
    )
    python = f"ansible_python_interpreter={sys.executable}"
    try:
        by_name = run(
            [tool("ansible-playbook"), "-i", "localhost,", "-e", python, f"{FQCN}.test_probe"],
            installed.env,
            installed.cwd,
        )
    finally:
        inside.unlink()
    assert by_name.returncode == 0, by_name.stdout + by_name.stderr
    assert "marks=['plan'] dead=[]" in by_name.stdout
    by_user = run(
        [tool("ansible-playbook"), "-i", "localhost,", "-e", python, str(outside)],
        installed.env,
        installed.cwd,
    )
    assert by_user.returncode == 0, by_user.stdout + by_user.stderr
    assert "plan=2.5 marks=['plan'] dead=0" in by_user.stdout


def test_ansible_doc_shows_every_roles_entry_points(installed: Installed) -> None:
    listed = run(
        [tool("ansible-doc"), "-t", "role", "-l", FQCN, "-j"], installed.env, installed.cwd
    )
    assert listed.returncode == 0, listed.stderr
    listing = json.loads(listed.stdout)
    assert sorted(role.split(".")[-1] for role in listing) == ROLES
    shown = run(
        [tool("ansible-doc"), "-t", "role", "-j", *[f"{FQCN}.{r}" for r in ROLES]],
        installed.env,
        installed.cwd,
    )
    assert shown.returncode == 0, shown.stderr
    docs = json.loads(shown.stdout)
    for role in ROLES:
        specs = yaml.safe_load((REPO / "roles" / role / "meta/argument_specs.yml").read_text())
        entry_points = docs[f"{FQCN}.{role}"]["entry_points"]
        assert set(entry_points) == set(specs["argument_specs"]), role
        for name, spec in specs["argument_specs"].items():
            options = set(spec.get("options", {}))
            assert set(entry_points[name].get("options", {})) == options, (role, name)


def registered_filters() -> set[str]:
    """The filter names the FilterModule of each plugins/filter/ file registers."""
    names: set[str] = set()
    for path in FILTER_FILES:
        spec = importlib.util.spec_from_file_location(f"collection_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        names |= set(module.FilterModule().filters())
    return names


def test_no_role_keeps_plugins_of_its_own() -> None:
    """A role inside a collection loads no library/, filter_plugins/ or other *_plugins/ of
    its own: every plugin is the collection's, once, under plugins/."""
    kept = [
        str(p.relative_to(REPO))
        for p in (REPO / "roles").glob("*/*")
        if p.is_dir() and (p.name in ("library", "module_utils") or p.name.endswith("_plugins"))
    ]
    assert kept == []
    assert not (REPO / "callback_plugins").exists()
    assert MODULES and FILTER_FILES and CALLBACKS


def test_ansible_doc_shows_the_collections_plugins(installed: Installed) -> None:
    for kind, names in {
        "module": set(MODULES),
        "filter": registered_filters(),
        "callback": set(CALLBACKS),
    }.items():
        listed = run(
            [tool("ansible-doc"), "-t", kind, "-l", FQCN, "-j"], installed.env, installed.cwd
        )
        assert listed.returncode == 0, listed.stderr
        assert {n.split(".")[-1] for n in json.loads(listed.stdout)} == names, kind


def task_keys(node: object) -> Iterator[str]:
    """The keys of every task (and block, play) in a loaded tasks file or playbook."""
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                yield from item
                for value in item.values():
                    yield from task_keys(value)


def test_the_roles_call_the_collections_plugins_by_fqcn() -> None:
    """A short name resolves from no installed collection's role: every module task and
    every filter of the roles and playbooks names the plugin by its FQCN."""
    filters = "|".join(sorted(registered_filters()))
    short_filter = re.compile(rf"\|\s*(?:{filters})\b(?!_)|map\('(?:{filters})'")
    found = []
    for path in sorted([*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("playbooks/*.yml")]):
        text = path.read_text()
        where = path.relative_to(REPO)
        found += [f"{where}: module {k}" for k in task_keys(yaml.safe_load(text)) if k in MODULES]
        found += [f"{where}: filter {m[0]}" for m in short_filter.finditer(text)]
    assert found == []


# --- metadata -------------------------------------------------------------------------------


def pinned(package: str) -> str:
    for line in (REPO / "requirements.lock").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package.lower():
            return version.rstrip(" \\").strip()
    raise AssertionError(f"{package} is not pinned in requirements.lock")


def collections_used() -> set[str]:
    used: set[str] = set()
    for path in [
        *REPO.glob("roles/*/tasks/*.yml"),
        *REPO.glob("playbooks/*.yml"),
        REPO / "ansible.cfg",
    ]:
        used |= set(COLLECTION_USE.findall(path.read_text()))
    return used


def bundled_version(collection: str) -> str:
    """The version the pinned ansible package ships (the one the tests run against)."""
    import ansible_collections

    # The namespace's folders: the ansible package's in the virtualenv, and the checkout's
    # collections/ (pytest's pythonpath), which holds no such MANIFEST.json.
    [manifest] = [
        Path(root) / collection.replace(".", "/") / "MANIFEST.json"
        for root in ansible_collections.__path__
        if (Path(root) / collection.replace(".", "/") / "MANIFEST.json").is_file()
    ][:1]
    return json.loads(manifest.read_text())["collection_info"]["version"]


def test_requires_ansible_admits_the_pinned_ansible_core() -> None:
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    assert pinned("ansible-core") in SpecifierSet(runtime["requires_ansible"])


def test_galaxy_dependencies_are_the_collections_the_roles_call_as_tested() -> None:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"]) == (NAMESPACE, NAME)
    dependencies = galaxy["dependencies"]
    assert set(dependencies) == collections_used()
    for collection, spec in dependencies.items():
        assert spec == f">={bundled_version(collection)}", collection


def test_the_execution_environment_pins_what_the_controller_is_tested_with() -> None:
    """execution-environment.yml on its own (no ansible-builder needed): the pinned
    ansible-core, boto3 and botocore, and the collections the roles call at the versions
    the pinned ansible package ships."""
    definition = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    dependencies = definition["dependencies"]
    assert dependencies["ansible_core"]["package_pip"] == f"ansible-core=={pinned('ansible-core')}"
    assert {f"boto3=={pinned('boto3')}", f"botocore=={pinned('botocore')}",
            f"cyclonedx-python-lib[json-validation]=={pinned('cyclonedx-python-lib')}"} <= set(
        dependencies["python"]
    )
    collections = {c["name"]: c["version"] for c in dependencies["galaxy"]["collections"]}
    assert set(collections) == collections_used()
    for collection, version in collections.items():
        assert version == bundled_version(collection), collection


@pytest.fixture(scope="module")
def ee_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    builder = BIN / "ansible-builder"
    if not builder.exists():
        found = shutil.which("ansible-builder")
        if found is None:
            pytest.skip(
                "ansible-builder is not installed in this virtualenv: requirements.txt pins it "
                "(scripts/bootstrap.sh installs it); the definition's pins are checked without it"
            )
        builder = Path(found)
    context = tmp_path_factory.mktemp("ee") / "context"
    created = subprocess.run(
        [
            str(builder),
            "create",
            "-f",
            str(REPO / "execution-environment.yml"),
            "--context",
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    return context


def test_ansible_builder_creates_the_execution_environments_build_context(
    ee_context: Path,
) -> None:
    definition = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    containerfile = (ee_context / "Containerfile").read_text()
    base = definition["images"]["base_image"]["name"]
    assert f'ARG EE_BASE_IMAGE="{base}"' in containerfile
    assert f"ansible-core=={pinned('ansible-core')}" in containerfile
    build = ee_context / "_build"
    python = (build / "requirements.txt").read_text().split()
    assert f"boto3=={pinned('boto3')}" in python
    assert f"botocore=={pinned('botocore')}" in python
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    collections = {c["name"]: c["version"] for c in galaxy["collections"]}
    assert set(collections) == collections_used()
    for collection, version in collections.items():
        assert version == bundled_version(collection), collection
    system = (build / "bindep.txt").read_text()
    for package in ("git-core", "openssh-clients", "tar"):
        assert re.search(rf"^{package} \[", system, re.MULTILINE), package
