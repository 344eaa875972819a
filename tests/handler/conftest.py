"""Fixtures for the handler tests: a trained model, a moto S3 server, clean caches."""

import hashlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from handler_support import (
    TRAINING_CSV,
    VENV_BIN,
    ModelObject,
    TrainedModel,
    admission_model_source,
    handler,
    r_eval,
    r_string,
    run_train,
)


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    out = tmp_path_factory.mktemp("trained")
    trimmed, untrimmed = out / "admission.rds", out / "untrimmed.rds"
    done = run_train(str(TRAINING_CSV), str(trimmed), str(untrimmed))
    assert done.returncode == 0, done.stderr
    return TrainedModel(trimmed=trimmed, untrimmed=untrimmed, stderr=done.stderr)


@pytest.fixture(autouse=True)
def model_from_training(trained_model: TrainedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test predicts with the freshly trained model unless it says otherwise."""
    monkeypatch.setenv("MODEL_PATH", str(trained_model.trimmed))
    monkeypatch.delenv("MAX_BATCH", raising=False)
    monkeypatch.delenv("MODEL_SHA256", raising=False)
    monkeypatch.delenv("CORS_ALLOW_ORIGINS", raising=False)


@pytest.fixture
def fresh_model_cache() -> Iterator[None]:
    """For tests that change where the model comes from: load it anew, and forget it after."""
    handler.reset_model_cache()
    yield
    handler.reset_model_cache()


@pytest.fixture(scope="session")
def model_coefficients(trained_model: TrainedModel) -> dict[str, float]:
    coef = r_eval(f"coef(readRDS({r_string(str(trained_model.trimmed))}))")
    return dict(zip(coef.names, coef))


# ------------------------------------------------------------------------------ S3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(url: str, server: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"moto_server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/reset", data=b"", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer at {url} within {timeout} s")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a free 127.0.0.1 port for the whole session."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("moto") / "moto_server.log").open("wb")
    server = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_serving(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Point boto3 (through AWS_ENDPOINT_URL only) at the moto server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return s3_endpoint


@pytest.fixture
def s3_model(
    s3_env: str,
    trained_model: TrainedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fresh_model_cache: None,
) -> ModelObject:
    """The trained model uploaded to a new bucket; the handler set up to fetch it."""
    import boto3

    client = boto3.client("s3")
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    key = "v1/admission.rds"
    body = trained_model.trimmed.read_bytes()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key=key, Body=body)
    cache_dir = tmp_path / "cache"
    monkeypatch.delenv("MODEL_PATH")
    no_bundled_model = str(tmp_path / "no-bundled-model.rds")
    monkeypatch.setattr(admission_model_source, "BUNDLED_MODEL", no_bundled_model)
    monkeypatch.setenv("MODEL_BUCKET", bucket)
    monkeypatch.setenv("MODEL_KEY", key)
    monkeypatch.setenv("MODEL_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("MODEL_SHA256", hashlib.sha256(body).hexdigest())
    monkeypatch.delenv("MODEL_BUCKET_OWNER", raising=False)
    return ModelObject(bucket=bucket, key=key, body=body, client=client, cache_dir=cache_dir)
