"""Model source precedence, and the S3 download cache against a real (moto) S3 endpoint."""

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from handler_support import HANDLER_DIR, OK, Ctx, ModelObject, admission_model_source, handler


def _cache_listing(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir())


def _answer_probability() -> float:
    return handler.lambda_handler(OK, Ctx())["probability"]


# ------------------------------------------------------------------------- precedence


def test_model_path_wins_over_a_bundled_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundled = tmp_path / "admission.rds"
    bundled.write_bytes(b"bundled")
    monkeypatch.setattr(admission_model_source, "BUNDLED_MODEL", str(bundled))
    monkeypatch.setenv("MODEL_PATH", "/models/chosen.rds")
    monkeypatch.setenv("MODEL_BUCKET", "ignored")
    assert admission_model_source.model_source() == admission_model_source.ModelSource(
        path="/models/chosen.rds"
    )


def test_bundled_model_wins_over_s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundled = tmp_path / "admission.rds"
    bundled.write_bytes(b"bundled")
    monkeypatch.setattr(admission_model_source, "BUNDLED_MODEL", str(bundled))
    monkeypatch.delenv("MODEL_PATH")
    monkeypatch.setenv("MODEL_BUCKET", "ignored")
    assert admission_model_source.model_source() == admission_model_source.ModelSource(
        path=str(bundled)
    )


def test_no_model_setting_is_an_error_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_model_cache: None
) -> None:
    """No default bucket: a function with no model configured says what to set."""
    monkeypatch.setattr(admission_model_source, "BUNDLED_MODEL", str(tmp_path / "absent.rds"))
    for name in ("MODEL_PATH", "MODEL_BUCKET", "MODEL_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(handler.ModelUnavailable) as caught:
        admission_model_source.model_source()
    assert caught.value.message == (
        "no model is configured: set MODEL_PATH, bundle admission.rds next to handler.py, "
        "or set MODEL_BUCKET, MODEL_KEY and MODEL_SHA256"
    )
    response = handler.lambda_handler({"httpMethod": "POST", "body": json.dumps(OK)}, Ctx())
    assert response["statusCode"] == 500
    monkeypatch.setenv("MODEL_BUCKET", "my-models")
    assert admission_model_source.model_source() == admission_model_source.ModelSource(
        bucket="my-models", key="admission.rds"
    )
    monkeypatch.setenv("MODEL_KEY", "prod/admission-v2.rds")
    assert admission_model_source.model_source() == admission_model_source.ModelSource(
        bucket="my-models", key="prod/admission-v2.rds"
    )


def test_cache_file_is_per_object_under_model_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_CACHE_DIR", "/var/cache/models")
    first = admission_model_source.cache_path("bucket", "v1/admission.rds")
    assert os.path.dirname(first) == "/var/cache/models"
    assert first.endswith("-admission.rds")
    assert first != admission_model_source.cache_path("bucket", "v2/admission.rds")
    assert first != admission_model_source.cache_path("other-bucket", "v1/admission.rds")
    monkeypatch.delenv("MODEL_CACHE_DIR")
    assert os.path.dirname(admission_model_source.cache_path("b", "k")) == "/tmp/r-lambda-models"


# ---------------------------------------------------------------------------- S3 cache


def test_boto3_uses_aws_endpoint_url_without_code_support(s3_model: ModelObject) -> None:
    assert admission_model_source._s3_client().meta.endpoint_url == os.environ["AWS_ENDPOINT_URL"]


def test_model_is_downloaded_once_and_then_read_from_the_cache(
    s3_model: ModelObject, capsys: pytest.CaptureFixture
) -> None:
    first = _answer_probability()
    cached = Path(admission_model_source.cache_path(s3_model.bucket, s3_model.key))
    assert cached.read_bytes() == s3_model.body
    assert _cache_listing(s3_model.cache_dir) == [cached.name]
    assert stat.S_IMODE(s3_model.cache_dir.stat().st_mode) == 0o700
    # A second cold start in the same environment must not touch S3 at all.
    s3_model.client.delete_object(Bucket=s3_model.bucket, Key=s3_model.key)
    handler.reset_model_cache()
    assert _answer_probability() == first
    assert round(first, 4) == 0.7384


def test_fetch_model_does_not_download_a_cached_object_again(s3_model: ModelObject) -> None:
    path = admission_model_source.fetch_model(s3_model.bucket, s3_model.key)
    s3_model.client.delete_object(Bucket=s3_model.bucket, Key=s3_model.key)
    assert admission_model_source.fetch_model(s3_model.bucket, s3_model.key) == path


@pytest.mark.parametrize(
    "damage",
    [
        lambda body: b"\x00garbage bytes\xff" * 10,
        lambda body: body[: len(body) // 2],
        lambda _: b"",
    ],
    ids=["garbage", "truncated", "empty"],
)
def test_corrupt_cached_file_is_replaced_by_a_fresh_download(
    s3_model: ModelObject, capsys: pytest.CaptureFixture, damage: Any
) -> None:
    cached = Path(admission_model_source.cache_path(s3_model.bucket, s3_model.key))
    cached.parent.mkdir(parents=True, mode=0o700)
    cached.write_bytes(damage(s3_model.body))
    assert round(_answer_probability(), 4) == 0.7384
    assert cached.read_bytes() == s3_model.body
    assert _cache_listing(s3_model.cache_dir) == [cached.name]


def test_corrupt_cache_recovery_is_logged(
    s3_model: ModelObject, capsys: pytest.CaptureFixture
) -> None:
    cached = Path(admission_model_source.cache_path(s3_model.bucket, s3_model.key))
    cached.parent.mkdir(parents=True, mode=0o700)
    cached.write_bytes(b"not an rds file")
    _answer_probability()
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "model_cache_invalid"
    assert events[0]["path"] == str(cached)
    assert events[1]["outcome"] == "ok"


def test_model_object_replaced_in_s3_is_refused_before_r_reads_it(
    s3_model: ModelObject, capsys: pytest.CaptureFixture
) -> None:
    """A readable model, but not the one MODEL_SHA256 names: never loaded, never cached,
    a 500 whose body names no bucket; the log says why."""
    other = s3_model.body[:-1] + bytes([s3_model.body[-1] ^ 1])
    s3_model.client.put_object(Bucket=s3_model.bucket, Key=s3_model.key, Body=other)
    response = handler.lambda_handler({"httpMethod": "POST", "body": json.dumps(OK)}, Ctx())
    assert response["statusCode"] == 500
    assert json.loads(response["body"])["error"] == "ModelUnavailable"
    assert s3_model.bucket not in response["body"]
    [line] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    actual = hashlib.sha256(other).hexdigest()
    assert line["outcome"] == "server_error"
    assert line["error"].startswith(
        f"the model s3://{s3_model.bucket}/{s3_model.key} has sha256 {actual}, not MODEL_SHA256"
    )
    assert _cache_listing(s3_model.cache_dir) == []
    with pytest.raises(handler.ModelUnavailable):
        handler.get_model()


def test_s3_model_needs_its_sha256(s3_model: ModelObject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL_SHA256")
    with pytest.raises(handler.ModelUnavailable) as caught:
        handler.get_model()
    assert caught.value.message.startswith("MODEL_SHA256 is required to load a model from S3")
    monkeypatch.setenv("MODEL_SHA256", "abc123")
    with pytest.raises(handler.ModelUnavailable) as caught:
        handler.get_model()
    assert caught.value.message == ("MODEL_SHA256='abc123' is not a sha256 (64 hexadecimal digits)")
    assert not s3_model.cache_dir.exists()


def test_model_file_with_another_sha256_is_refused(
    fresh_model_cache: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = Path(admission_model_source.model_source().path)
    monkeypatch.setenv("MODEL_SHA256", "0" * 64)
    with pytest.raises(handler.ModelUnavailable) as caught:
        handler.get_model()
    assert caught.value.message == (
        f"model file {model} has sha256 {admission_model_source.file_sha256(str(model))}, "
        f"not MODEL_SHA256 {'0' * 64}: it is not the model this function was configured with, "
        "and is not loaded"
    )
    monkeypatch.setenv("MODEL_SHA256", admission_model_source.file_sha256(str(model)).upper())
    assert round(handler.admit_probability(800, 4, 1), 4) == 0.7384


def test_a_model_that_failed_to_load_fails_fast_until_the_retry_time(
    monkeypatch: pytest.MonkeyPatch, fresh_model_cache: None
) -> None:
    """A wrong MODEL_SHA256: the same 500 for each invocation, without reading (or, from S3,
    downloading) the model again until MODEL_RETRY_SECONDS have passed."""
    monkeypatch.setenv("MODEL_SHA256", "0" * 64)
    loads = []
    real_load = admission_model_source._load_model
    monkeypatch.setattr(admission_model_source, "_load_model",
                        lambda: loads.append(1) or real_load())
    event = {"version": "2.0", "requestContext": {"http": {"method": "POST"}}, "body": "{}"}
    answers = [handler.lambda_handler({**event, "body": json.dumps(OK)}, Ctx()) for _ in range(3)]
    assert len(loads) == 1
    assert {answer["statusCode"] for answer in answers} == {500}
    assert len({answer["body"] for answer in answers}) == 1
    monkeypatch.setattr(admission_model_source, "MODEL_RETRY_SECONDS", 0.0)
    assert handler.lambda_handler({**event, "body": json.dumps(OK)}, Ctx())["statusCode"] == 500
    assert len(loads) == 2  # tried again once the time passed
    monkeypatch.setattr(admission_model_source, "MODEL_RETRY_SECONDS", 30.0)
    monkeypatch.delenv("MODEL_SHA256")  # other settings: tried at once
    assert handler.lambda_handler({**event, "body": json.dumps(OK)}, Ctx())["statusCode"] == 200


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o777])
def test_cache_folder_others_may_enter_is_refused(s3_model: ModelObject, mode: int) -> None:
    s3_model.cache_dir.mkdir()
    s3_model.cache_dir.chmod(mode)
    planted = Path(admission_model_source.cache_path(s3_model.bucket, s3_model.key))
    planted.write_bytes(s3_model.body)  # even the right bytes: the folder is not private
    with pytest.raises(handler.ModelUnavailable) as caught:
        handler.get_model()
    assert caught.value.message.startswith(
        f"the model cache {s3_model.cache_dir} is not a private folder of this user"
    )


def test_expected_bucket_owner_is_sent_when_configured(
    s3_model: ModelObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[dict] = []
    client = admission_model_source._s3_client()
    client.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: sent.append(dict(params["headers"]))
    )
    monkeypatch.setattr(admission_model_source, "_s3_client", lambda: client)
    monkeypatch.setenv("MODEL_BUCKET_OWNER", "123456789012")
    assert round(handler.admit_probability(800, 4, 1), 4) == 0.7384
    assert sent[0]["x-amz-expected-bucket-owner"] == "123456789012"


def test_leftover_partial_downloads_do_not_break_loading(s3_model: ModelObject) -> None:
    cached = Path(admission_model_source.cache_path(s3_model.bucket, s3_model.key))
    s3_model.cache_dir.mkdir(mode=0o700)
    fresh = s3_model.cache_dir / f".{cached.name}.abc123.part"  # maybe still being written
    stale = s3_model.cache_dir / f".{cached.name}.dead00.part"  # from a killed process
    fresh.write_bytes(s3_model.body[:100])
    stale.write_bytes(s3_model.body[:100])
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    assert round(_answer_probability(), 4) == 0.7384
    assert cached.read_bytes() == s3_model.body
    assert _cache_listing(s3_model.cache_dir) == sorted([cached.name, fresh.name])


def test_missing_object_is_a_500_naming_it_and_leaves_no_file(
    s3_model: ModelObject,
) -> None:
    s3_model.client.delete_object(Bucket=s3_model.bucket, Key=s3_model.key)
    with pytest.raises(handler.ModelUnavailable) as caught:
        handler.lambda_handler(OK, Ctx())
    message = caught.value.message
    assert message.startswith(f"cannot download the model s3://{s3_model.bucket}/{s3_model.key}")
    assert "NoSuchKey" in message
    assert _cache_listing(s3_model.cache_dir) == []


def test_missing_boto3_is_a_500_saying_how_to_fix_it(
    s3_model: ModelObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(handler.ModelUnavailable) as caught:
        handler.lambda_handler(OK, Ctx())
    assert caught.value.message == (
        "boto3 is needed to download the model from S3; bundle admission.rds next to "
        "handler.py or set MODEL_PATH"
    )


def test_concurrent_fetches_from_threads_leave_one_valid_file(s3_model: ModelObject) -> None:
    barrier = threading.Barrier(8)
    paths: list[str] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            barrier.wait()
            paths.append(admission_model_source.fetch_model(s3_model.bucket, s3_model.key))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(paths)) == 1
    assert Path(paths[0]).read_bytes() == s3_model.body
    assert _cache_listing(s3_model.cache_dir) == [Path(paths[0]).name]


def test_concurrent_fetches_from_processes_leave_one_valid_file(s3_model: ModelObject) -> None:
    start = s3_model.cache_dir.parent / "start"
    child = (
        "import os, time\n"
        # The handler's module from the folder the child runs in (python -c: its first path).
        "import boto3, admission_model_source\n"
        f"while not os.path.exists({str(start)!r}): time.sleep(0.005)\n"
        "bucket, key = os.environ['MODEL_BUCKET'], os.environ['MODEL_KEY']\n"
        "print(admission_model_source.fetch_model(bucket, key))\n"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", child], cwd=HANDLER_DIR,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(6)
    ]
    time.sleep(0.5)  # let them import boto3, then release them together
    start.touch()
    outputs = [c.communicate(timeout=60) for c in children]
    assert [c.returncode for c in children] == [0] * 6, outputs
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert path.read_bytes() == s3_model.body
    assert _cache_listing(s3_model.cache_dir) == [path.name]
