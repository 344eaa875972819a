"""Where the model comes from, and the model loaded once per process.

Model source, first match wins:

1. ``MODEL_PATH`` if set: that local file (a missing file is an error, no fallback).
2. ``admission.rds`` next to this file (the model bundled in the deployment package).
3. S3 object ``MODEL_BUCKET``/``MODEL_KEY`` (no default bucket; key ``admission.rds``),
   whose sha256 ``MODEL_SHA256`` must give, downloaded once into the private (0700)
   ``MODEL_CACHE_DIR`` (default ``/tmp/r-lambda-models``), with ``ExpectedBucketOwner``
   ``MODEL_BUCKET_OWNER`` when set. With none of the three, loading fails naming them.

Whatever the source, a model whose sha256 is not ``MODEL_SHA256`` (when set) is refused
before R reads it. hashlib, boto3 and the download's modules are imported only when
needed, so importing this module stays cheap.
"""

import contextlib
import os
import re
import time
from typing import Any, NamedTuple, Optional

from admission_errors import HandlerError, ModelUnavailable, log_line
from admission_predictor import LoadedModel, read_model
from admission_r_session import R_LOCK, start_r

BUNDLED_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "admission.rds")
DEFAULT_MODEL_KEY = "admission.rds"
# Where a downloaded model is cached: a folder only this user may enter (Lambda's /tmp is
# per execution environment, but nothing else may plant or swap a model there).
DEFAULT_CACHE_DIR = "/tmp/r-lambda-models"
NO_MODEL = (
    "no model is configured: set MODEL_PATH, bundle admission.rds next to handler.py, "
    "or set MODEL_BUCKET, MODEL_KEY and MODEL_SHA256"
)
# A download's temporary file older than this is left over from a killed process.
STALE_DOWNLOAD_SECONDS = 15 * 60

_model: Optional[LoadedModel] = None
# A model that failed to load (a wrong MODEL_SHA256, a missing object...) is not tried
# again for this long: each invocation meanwhile fails fast with the same 500, and does not
# download the model again.
MODEL_RETRY_SECONDS = 30.0
# When, with which model settings, and what failed.
_failure: Optional[tuple[float, tuple[str, ...], HandlerError]] = None
MODEL_SETTINGS = ("MODEL_PATH", "MODEL_BUCKET", "MODEL_KEY", "MODEL_SHA256")


class ModelSource(NamedTuple):
    """Where the model comes from: a local ``path``, or S3 ``bucket``/``key``."""

    path: Optional[str] = None
    bucket: str = ""
    key: str = ""


def model_source() -> ModelSource:
    """MODEL_PATH, else the bundled admission.rds, else S3 MODEL_BUCKET/MODEL_KEY (no
    default bucket: with none of them set, ModelUnavailable names the variables)."""
    path = os.environ.get("MODEL_PATH")
    if path:
        return ModelSource(path=path)
    if os.path.isfile(BUNDLED_MODEL):
        return ModelSource(path=BUNDLED_MODEL)
    bucket = os.environ.get("MODEL_BUCKET", "").strip()
    if not bucket:
        raise ModelUnavailable(NO_MODEL)
    key = os.environ.get("MODEL_KEY") or DEFAULT_MODEL_KEY
    return ModelSource(bucket=bucket, key=key)


def expected_sha256(required: bool) -> Optional[str]:
    """MODEL_SHA256 (64 hex digits, any case), or None when unset and not ``required``."""
    raw = os.environ.get("MODEL_SHA256", "").strip().lower()
    if not raw:
        if required:
            raise ModelUnavailable(
                "MODEL_SHA256 is required to load a model from S3 (MODEL_BUCKET): the "
                "sha256 the release manifest records for it"
            )
        return None
    if not re.fullmatch(r"[0-9a-f]{64}", raw):
        raise ModelUnavailable(f"MODEL_SHA256={raw!r} is not a sha256 (64 hexadecimal digits)")
    return raw


def file_sha256(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_sha256(path: str, expected: Optional[str], what: str) -> None:
    """ModelUnavailable unless the file at ``path`` has the sha256 configured."""
    if expected is None:
        return
    actual = file_sha256(path)
    if actual != expected:
        raise ModelUnavailable(
            f"{what} has sha256 {actual}, not MODEL_SHA256 {expected}: it is not the "
            "model this function was configured with, and is not loaded"
        )


def _private_cache_dir(directory: str) -> str:
    """``directory``, created 0700; refused when another user owns it or may enter it."""
    import stat

    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.geteuid()
        or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    ):
        raise ModelUnavailable(
            f"the model cache {directory} is not a private folder of this user (mode "
            f"{stat.filemode(info.st_mode)}, owner uid {info.st_uid}): a model cached there "
            "could have been planted; use another MODEL_CACHE_DIR"
        )
    return directory


def cache_path(bucket: str, key: str, cache_dir: Optional[str] = None) -> str:
    """The cache file for s3://bucket/key: distinct per object, named after the key."""
    import hashlib  # here, not at the top: only the S3 source needs it (cold start)

    directory = cache_dir or os.environ.get("MODEL_CACHE_DIR") or DEFAULT_CACHE_DIR
    digest = hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:12]
    name = os.path.basename(key) or "model.rds"
    return os.path.join(directory, f"model-{digest}-{name}")


def _s3_client() -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ModelUnavailable(
            "boto3 is needed to download the model from S3; bundle admission.rds next to "
            "handler.py or set MODEL_PATH"
        ) from exc
    # boto3 >= 1.28.57 honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 by itself.
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3})
    return boto3.client("s3", config=config)


def _remove_stale_downloads(final: str) -> None:
    import glob

    pattern = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.*.part")
    cutoff = time.time() - STALE_DOWNLOAD_SECONDS
    for leftover in glob.glob(pattern):
        with contextlib.suppress(OSError):
            if os.path.getmtime(leftover) < cutoff:
                os.unlink(leftover)


def _download(bucket: str, key: str, final: str, sha256: str) -> None:
    """Stream the object to a temporary file next to ``final``, check its sha256, then
    rename it: a wrong or partial object never reaches ``final``."""
    import shutil
    import tempfile

    directory = os.path.dirname(final)
    fd, partial = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(final)}.", suffix=".part"
    )
    owner = os.environ.get("MODEL_BUCKET_OWNER", "").strip()
    try:
        with os.fdopen(fd, "wb") as out:
            extra = {"ExpectedBucketOwner": owner} if owner else {}
            response = _s3_client().get_object(Bucket=bucket, Key=key, **extra)
            shutil.copyfileobj(response["Body"], out)
            out.flush()
            os.fsync(out.fileno())
            size = out.tell()
        expected = response.get("ContentLength")
        if expected is not None and size != expected:
            raise OSError(f"got {size} of {expected} bytes")
        _verify_sha256(partial, sha256, f"the model s3://{bucket}/{key}")
        os.replace(partial, final)  # atomic: readers see no file or a whole file
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def fetch_model(
    bucket: str, key: str, cache_dir: Optional[str] = None, sha256: Optional[str] = None
) -> str:
    """The local path of s3://bucket/key with the sha256 configured (MODEL_SHA256 unless
    given), downloaded only when the private cache does not hold those bytes already."""
    expected = sha256 or expected_sha256(required=True)
    final = cache_path(bucket, key, cache_dir)
    _private_cache_dir(os.path.dirname(final))
    if os.path.isfile(final):
        if file_sha256(final) == expected:
            return final
        log_line({"event": "model_cache_invalid", "path": final, "reason": "sha256 differs"})
        with contextlib.suppress(FileNotFoundError):
            os.unlink(final)
    try:
        _remove_stale_downloads(final)
        _download(bucket, key, final, expected)
    except HandlerError:
        raise
    except Exception as exc:
        raise ModelUnavailable(
            f"cannot download the model s3://{bucket}/{key} to {final}: {exc}"
        ) from exc
    return final


def _load_model() -> LoadedModel:
    source = model_source()
    if source.path is not None:
        if not os.path.isfile(source.path):
            origin = "MODEL_PATH" if os.environ.get("MODEL_PATH") else "bundled model"
            raise ModelUnavailable(f"model file {source.path} ({origin}) does not exist")
        _verify_sha256(source.path, expected_sha256(required=False), f"model file {source.path}")
        return read_model(start_r(), source.path)
    # Verified against MODEL_SHA256 before R reads it: bytes R cannot read are the
    # configured object's own, and downloading them again would not help.
    return read_model(start_r(), fetch_model(source.bucket, source.key))


def get_model() -> LoadedModel:
    """The model, loaded at the first call in this process. A load that fails with a server
    error is remembered for MODEL_RETRY_SECONDS: until then each call with the same model
    settings raises a copy of the same error at once; the first call after that (or with
    other settings) tries again."""
    global _model, _failure
    with R_LOCK:
        if _model is not None:
            return _model
        settings = tuple(os.environ.get(name, "") for name in MODEL_SETTINGS)
        if (_failure is not None and _failure[1] == settings
                and time.monotonic() - _failure[0] < MODEL_RETRY_SECONDS):
            raise copy_of(_failure[2])
        try:
            _model = _load_model()
        except HandlerError as err:
            if err.http_status >= 500:
                _failure = (time.monotonic(), settings, copy_of(err))
            raise
        _failure = None
        return _model


def copy_of(err: HandlerError) -> HandlerError:
    import copy  # here: only a failed load needs it

    return copy.copy(err)


def reset_model_cache() -> None:
    """Forget the loaded model and a remembered failure (R itself stays up); the next
    prediction loads the model again."""
    global _model, _failure
    with R_LOCK:
        _model = None
        _failure = None
