"""deploy's function URL module against a real Lambda API (a moto server over HTTP): a URL
in front of the alias with exactly the configured CORS, the two public statements only for
auth type NONE, and nothing left once it is turned off. (moto keeps one URL per function
whatever the qualifier, and an update never clears CORS: the sandbox test checks the
qualifier in the requests the deploy made.)"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from module_loading import load

REPO = Path(__file__).resolve().parents[4]
url_mod = load("deploy_function_url", REPO / "plugins/modules/deploy_function_url.py")
ORIGIN = "https://admissions.example.org"


@pytest.fixture(scope="module")
def lam(moto_client):
    client = moto_client("lambda")
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole"}]}  # fmt: skip
    role = moto_client("iam").create_role(
        RoleName="url", AssumeRolePolicyDocument=json.dumps(trust)
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def lambda_handler(event, context):\n    return 1\n")
    client.create_function(
        FunctionName="fn",
        Runtime="python3.13",
        Role=role["Role"]["Arn"],
        Handler="handler.lambda_handler",
        Code={"ZipFile": buffer.getvalue()},
        Publish=True,
    )
    client.create_alias(FunctionName="fn", Name="live", FunctionVersion="1")
    return client


def params(**changes) -> dict:
    base = dict(name="fn", qualifier="live", state="present", auth_type="AWS_IAM",
                cors_origins=[], cors_max_age=300)  # fmt: skip
    return base | changes


def statements(lam) -> dict[str, dict]:
    try:
        policy = lam.get_policy(FunctionName="fn", Qualifier="live")["Policy"]
    except lam.exceptions.ResourceNotFoundException:
        return {}
    return {item["Sid"]: item for item in json.loads(policy)["Statement"]}


def test_a_public_url_gets_its_cors_and_both_statements_once(lam) -> None:
    wanted = params(auth_type="NONE", cors_origins=[ORIGIN])
    made = url_mod.apply(lam, wanted)
    assert made["changed"] and made["function_url"].startswith("https://")
    config = lam.get_function_url_config(FunctionName="fn", Qualifier="live")
    assert config["AuthType"] == "NONE"
    assert config["Cors"] == {"AllowOrigins": [ORIGIN], "AllowMethods": ["POST"],
                              "AllowHeaders": ["content-type"], "MaxAge": 300}  # fmt: skip
    found = statements(lam)
    assert found["r-lambda-function-url-public"]["Action"] == "lambda:InvokeFunctionUrl"
    assert found["r-lambda-function-url-public"]["FunctionUrlAuthType"] == "NONE"
    assert found["r-lambda-function-url-invoke"]["Action"] == "lambda:InvokeFunction"
    assert found["r-lambda-function-url-invoke"]["InvokedViaFunctionUrl"] is True
    assert all(item["Resource"].endswith(":fn:live") for item in found.values())
    again = url_mod.apply(lam, wanted)
    assert (again["changed"], again["function_url"]) == (False, made["function_url"])
    assert len(statements(lam)) == 2


def test_signed_callers_only_takes_the_public_statements_away(lam) -> None:
    result = url_mod.apply(lam, params(auth_type="AWS_IAM", cors_origins=[ORIGIN]))
    assert result["changed"]
    assert sorted(result["statements_removed"]) == sorted(url_mod.PUBLIC_STATEMENTS)
    assert lam.get_function_url_config(FunctionName="fn", Qualifier="live")["AuthType"] == (
        "AWS_IAM"
    )
    assert statements(lam) == {}


def test_turned_off_the_url_is_gone_and_stays_gone(lam) -> None:
    url_mod.apply(lam, params(auth_type="NONE"))
    removed = url_mod.apply(lam, params(state="absent"))
    assert removed["changed"] and removed["url_removed"].startswith("https://")
    assert removed["function_url"] == ""
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName="fn", Qualifier="live")
    assert statements(lam) == {}
    assert url_mod.apply(lam, params(state="absent"))["changed"] is False


def test_cors_is_exactly_the_origins_or_nothing() -> None:
    assert url_mod.cors_of([], 300) == {}
    cors = url_mod.cors_of(["https://b.example.org", ORIGIN], 60)
    assert cors["AllowOrigins"] == [ORIGIN, "https://b.example.org"]
    assert (cors["AllowMethods"], cors["MaxAge"]) == (["POST"], 60)
