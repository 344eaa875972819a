"""deploy's own module against a real Lambda API (a moto server over HTTP): it gives an
existing function exactly the layers asked for, detaching what amazon.aws.lambda never
detaches, and leaves a function that does not exist alone."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from module_loading import load

REPO = Path(__file__).resolve().parents[4]
layers_mod = load("deploy_function_layers", REPO / "plugins/modules/deploy_function_layers.py")


@pytest.fixture(scope="module")
def clients(moto_client):
    return {name: moto_client(name) for name in ("lambda", "iam")}


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def lambda_handler(event, context):\n    return 1\n")
    return buffer.getvalue()


def test_layers_are_set_exactly_and_a_missing_function_is_left_alone(clients) -> None:
    lam = clients["lambda"]
    assert layers_mod.set_layers(lam, "nope", []) == {
        "changed": False,
        "exists": False,
        "layers": [],
    }
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole"}]}  # fmt: skip
    role = clients["iam"].create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps(trust))
    layer = lam.publish_layer_version(LayerName="L", Content={"ZipFile": _zip()})
    arn = layer["LayerVersionArn"]
    lam.create_function(
        FunctionName="f",
        Runtime="python3.13",
        Role=role["Role"]["Arn"],
        Handler="handler.lambda_handler",
        Code={"ZipFile": _zip()},
        Layers=[arn],
    )
    assert layers_mod.set_layers(lam, "f", [arn])["changed"] is False
    detached = layers_mod.set_layers(lam, "f", [])
    assert (detached["changed"], detached["was"]) == (True, [arn])
    assert lam.get_function_configuration(FunctionName="f").get("Layers", []) == []
    assert layers_mod.set_layers(lam, "f", [arn])["changed"] is True
    assert [x["Arn"] for x in lam.get_function_configuration(FunctionName="f")["Layers"]] == [arn]
