"""Every module of the collection documents itself as an amazon.aws module does (issue 25):
DOCUMENTATION, EXAMPLES and RETURN are there, parse as YAML, and DOCUMENTATION's options are
exactly the module's argument_spec (types, defaults, choices, required, elements,
suboptions). ansible-test sanity's validate-modules (scripts/sanity, make lint) checks the
same and more; this is the fast guard that runs with the unit tests."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from ansible.module_utils import basic
from module_loading import load

REPO = Path(__file__).resolve().parents[4]
MODULES = sorted((REPO / "plugins/modules").glob("*.py"))


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (ansible-doc warns
    and ansible-test sanity's yamllint fails; plain safe_load keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class Captured(Exception):
    """Raised by the stand-in AnsibleModule once it holds the module's argument_spec."""


def docs(path: Path) -> dict[str, Any]:
    """The module's DOCUMENTATION, EXAMPLES and RETURN as YAML, read without running it."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
                found[name] = yaml.load(ast.literal_eval(node.value), Loader=UniqueKeyLoader)
    return found


def argument_spec(path: Path) -> dict[str, Any]:
    """The argument_spec the module gives AnsibleModule (main() stopped right there), or, for
    a module that only documents an action plugin, the one the action validates."""
    action = REPO / "plugins/action" / path.name
    if action.exists():
        for node in ast.walk(ast.parse(action.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == (
                    "validate_argument_spec"):
                return ast.literal_eval(node.keywords[0].value)
        raise AssertionError(f"{action} validates no argument_spec")
    module = load(f"module_docs_{path.stem}", path)
    seen: dict[str, Any] = {}

    def capture(self, argument_spec, **kwargs):
        seen.update(argument_spec)
        raise Captured

    with mock.patch.object(basic.AnsibleModule, "__init__", capture), \
            pytest.raises(Captured):
        module.main()
    return seen


def mismatches(spec: dict[str, Any], documented: dict[str, Any], where: str = "") -> list[str]:
    """How the documented options differ from the argument_spec (each a sentence)."""
    problems = []
    for name in sorted(set(documented) - set(spec)):
        problems.append(f"{where}{name} is documented but not in the argument_spec")
    for name, option in sorted(spec.items()):
        doc = documented.get(name)
        if doc is None:
            problems.append(f"{where}{name} is not documented")
            continue
        if not doc.get("description"):
            problems.append(f"{where}{name} has no description")
        for key, default in (("type", "str"), ("default", None), ("required", False),
                             ("elements", None)):
            want, have = option.get(key, default), doc.get(key, default)
            if want != have:
                problems.append(f"{where}{name}: {key} is {want!r} in the argument_spec, "
                                f"{have!r} in DOCUMENTATION")
        want_choices = set(option.get("choices") or [])
        have_choices = set(doc.get("choices") or [])
        if want_choices != have_choices:
            problems.append(f"{where}{name}: choices {sorted(want_choices)} in the "
                            f"argument_spec, {sorted(have_choices)} in DOCUMENTATION")
        if option.get("options") or doc.get("suboptions"):
            problems += mismatches(option.get("options") or {}, doc.get("suboptions") or {},
                                   f"{where}{name}.")
    return problems


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_a_module_has_documentation_examples_and_return(path: Path) -> None:
    found = docs(path)
    assert sorted(found) == ["DOCUMENTATION", "EXAMPLES", "RETURN"], path.name
    documentation, examples, returns = found["DOCUMENTATION"], found["EXAMPLES"], found["RETURN"]
    assert documentation["module"] == path.stem
    for key in ("short_description", "description", "author", "version_added"):
        assert documentation.get(key), f"{path.name}: DOCUMENTATION has no {key}"
    assert isinstance(examples, list) and examples, f"{path.name}: EXAMPLES holds no task"
    fqcn = f"r_lambda.release.{path.stem}"
    assert any(fqcn in task for task in examples), f"{path.name}: no example uses {fqcn}"
    assert not any(path.stem in task for task in examples), f"{path.name}: a short name"
    assert all(task.get("name") for task in examples), f"{path.name}: an example has no name"
    assert isinstance(returns, dict) and returns, f"{path.name}: RETURN names nothing"
    for key, value in returns.items():
        missing = {"description", "returned", "type", "sample"} - set(value)
        assert not missing, f"{path.name}: RETURN's {key} lacks {sorted(missing)}"


def own_argument_spec(path: Path) -> dict[str, Any]:
    """The module's argument_spec less amazon.aws's connection options, which an
    AnsibleAWSModule adds and its documentation fragments document (profile, region...)."""
    spec = argument_spec(path)
    fragments = docs(path)["DOCUMENTATION"].get("extends_documentation_fragment") or []
    if "amazon.aws.common.modules" in fragments:
        from ansible_collections.amazon.aws.plugins.module_utils.modules import aws_argument_spec

        spec = {name: option for name, option in spec.items() if name not in aws_argument_spec()}
    return spec


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_documented_options_are_exactly_the_argument_spec(path: Path) -> None:
    documented = docs(path)["DOCUMENTATION"].get("options") or {}
    assert mismatches(own_argument_spec(path), documented) == []


def test_the_aws_modules_take_amazon_aws_connection_options_and_join_its_group() -> None:
    """module_defaults group/r_lambda.release.aws reaches them as it reaches amazon.aws's."""
    runtime = yaml.safe_load((REPO / "meta/runtime.yml").read_text())
    group = runtime["action_groups"]["aws"]
    assert {"metadata": {"extend_group": ["amazon.aws.aws"]}} in group
    for name in ("artifact_store_s3", "deploy_function_layers", "deploy_function_url"):
        spec = argument_spec(REPO / "plugins/modules" / f"{name}.py")
        assert {"profile", "endpoint_url", "region", "access_key"} <= set(spec), name
        assert name in group, name


def test_an_undocumented_or_mistyped_option_is_reported() -> None:
    spec = {"name": {"type": "str", "required": True}, "keep": {"type": "int", "default": 5}}
    documented = {"name": {"type": "str", "required": True, "description": "The name."},
                  "keep": {"type": "int", "default": 3, "description": "How many."},
                  "gone": {"type": "str", "description": "Not accepted."}}
    assert mismatches(spec, documented) == [
        "gone is documented but not in the argument_spec",
        "keep: default is 5 in the argument_spec, 3 in DOCUMENTATION",
    ]
