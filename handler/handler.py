"""AWS Lambda handler: probability of graduate admission from an R logistic regression.

The model is any glm or lm on gre, gpa and rank: ``model/train.R``'s
``glm(admit ~ gre + gpa + rank, family = binomial)``, the 2017 procedure's model (rank a
factor in its data), ``factor(rank)`` in the formula, a numeric rank, interactions,
splines, other links. Predictions run in an embedded R through rpy2's low-level
``rpy2.rinterface`` API. R and the model are loaded once per process, at the first
prediction, so importing this module (e.g. to unit-test input validation) is cheap.
Predictions are bitwise those of R's ``predict(model, newdata, type = "response")`` for
newdata built the way the model expects; admission_model.R plans, when the model loads,
how (directly from the model matrix when the design allows, else with predict()), and
rejects a model the handler cannot serve with an error naming why.

Model source, first match wins:

1. ``MODEL_PATH`` if set: that local file (a missing file is an error, no fallback).
2. ``admission.rds`` next to this file (the model bundled in the deployment package).
3. S3 object ``MODEL_BUCKET``/``MODEL_KEY`` (no default bucket; key ``admission.rds``),
   whose sha256 ``MODEL_SHA256`` must give, downloaded once into the private (0700)
   ``MODEL_CACHE_DIR`` (default ``/tmp/r-lambda-models``), with ``ExpectedBucketOwner``
   ``MODEL_BUCKET_OWNER`` when set. With none of the three, loading fails naming them.

Whatever the source, a model whose sha256 is not ``MODEL_SHA256`` (when set) is refused
before R reads it. A server error tells the caller only its request id: host paths,
bucket names and causes go to the log line of the invocation.

See README.md for the accepted events, the responses and the error contract.
"""

import array
import atexit
import base64
import contextlib
import dataclasses
import json
import math
import operator
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

HANDLER_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGED_R_HOME = os.path.join(HANDLER_DIR, "R")
# Where R is when it ships in a Lambda layer (layers are unpacked under /opt).
LAYER_R_HOME = "/opt/R"
BUNDLED_MODEL = os.path.join(HANDLER_DIR, "admission.rds")
DEFAULT_MODEL_KEY = "admission.rds"
# Where a downloaded model is cached: a folder only this user may enter (Lambda's /tmp is
# per execution environment, but nothing else may plant or swap a model there).
DEFAULT_CACHE_DIR = "/tmp/r-lambda-models"
NO_MODEL = (
    "no model is configured: set MODEL_PATH, bundle admission.rds next to handler.py, "
    "or set MODEL_BUCKET, MODEL_KEY and MODEL_SHA256"
)
MAX_BATCH = 1000
# A download's temporary file older than this is left over from a killed process.
STALE_DOWNLOAD_SECONDS = 15 * 60

GRE_RANGE = (200.0, 800.0)
GPA_RANGE = (0.0, 4.0)
RANKS = (1, 2, 3, 4)
FIELD_EXPECTATIONS = {
    "gre": "a number between 200 and 800",
    "gpa": "a number between 0 and 4",
    "rank": "one of 1, 2, 3, 4",
}

CORS_ALLOW_METHODS = "GET, POST, OPTIONS"
CORS_ALLOW_HEADERS = "Content-Type, Authorization, X-Api-Key, X-Amz-Date, X-Amz-Security-Token"

# Plain decimal notation only: float() would also take "nan", "1_000" or "٨٠٠".
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# --------------------------------------------------------------------------- errors


class HandlerError(Exception):
    """An error the handler reports to its caller; str() is the JSON Lambda returns."""

    error_type = "InternalServerError"
    http_status = 500

    def __init__(
        self, message: str, field: Optional[str] = None, request_id: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.request_id = request_id

    @property
    def public_message(self) -> str:
        """What the caller is told: a client error in full; for a server error, no host
        path, bucket or cause (the log line of the invocation has them)."""
        if self.http_status < 500:
            return self.message
        return (
            "the service could not answer; the function log has the cause "
            f"under request_id {self.request_id}"
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "errorType": self.error_type,
            "httpStatus": self.http_status,
            "request_id": self.request_id,
            "message": self.public_message,
        }
        if self.field is not None:
            data["field"] = self.field
        return data

    def __str__(self) -> str:
        return json.dumps(self.to_dict())


class BadRequest(HandlerError):
    """The input is invalid; ``field`` names the offending input."""

    error_type = "BadRequest"
    http_status = 400


class InternalServerError(HandlerError):
    """The handler could not answer a valid request (configuration, R, a bug)."""


class ModelUnavailable(InternalServerError):
    """The model (or R) could not be loaded."""

    error_type = "ModelUnavailable"


# ----------------------------------------------------------------------- validation


@dataclasses.dataclass(frozen=True)
class Applicant:
    gre: float
    gpa: float
    rank: int


@dataclasses.dataclass(frozen=True)
class Request:
    applicants: list[Applicant]
    batch: bool


def _describe(value: Any) -> str:
    """A short rendering of a client value for an error message."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _to_number(value: Any) -> Optional[float]:
    """The finite number ``value`` denotes (a number or a numeric string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value.strip())
    else:
        return None
    return number if math.isfinite(number) else None


def _field_value(data: Mapping[str, Any], name: str, prefix: str) -> float:
    field = prefix + name
    expected = FIELD_EXPECTATIONS[name]
    if name not in data:
        raise BadRequest(f"{field} is required: {expected}", field)
    value = data[name]
    number = _to_number(value)
    if number is None:
        raise BadRequest(f"{field} must be {expected}, got {_describe(value)}", field)
    return number


def _check_range(number: float, bounds: tuple[float, float], name: str, prefix: str) -> float:
    low, high = bounds
    if not low <= number <= high:
        field = prefix + name
        raise BadRequest(f"{field} must be {FIELD_EXPECTATIONS[name]}, got {number:g}", field)
    return number


def _check_rank(number: float, prefix: str) -> int:
    if number not in RANKS:  # 1.0 == 1; 1.5 and 5 are not ranks
        field = prefix + "rank"
        raise BadRequest(f"{field} must be {FIELD_EXPECTATIONS['rank']}, got {number:g}", field)
    return int(number)


def parse_applicant(data: Any, where: str = "") -> Applicant:
    """Validate one applicant; ``where`` (e.g. ``applicants[3]``) prefixes field names."""
    prefix = f"{where}." if where else ""
    if not isinstance(data, Mapping):
        name = where or "event"
        raise BadRequest(f"{name} must be an object with gre, gpa and rank", name)
    return Applicant(
        gre=_check_range(_field_value(data, "gre", prefix), GRE_RANGE, "gre", prefix),
        gpa=_check_range(_field_value(data, "gpa", prefix), GPA_RANGE, "gpa", prefix),
        rank=_check_rank(_field_value(data, "rank", prefix), prefix),
    )


def parse_applicants(items: Any, limit: Optional[int] = None) -> list[Applicant]:
    """Validate a batch: a non-empty list of at most ``limit`` applicants."""
    if not isinstance(items, (list, tuple)):
        raise BadRequest(
            f"applicants must be a list of objects with gre, gpa and rank, got {_describe(items)}",
            "applicants",
        )
    if not items:
        raise BadRequest("applicants must contain at least one applicant", "applicants")
    if limit is not None and len(items) > limit:
        raise BadRequest(
            f"applicants has {len(items)} entries; at most {limit} are allowed per request",
            "applicants",
        )
    return [parse_applicant(item, f"applicants[{index}]") for index, item in enumerate(items)]


def max_batch() -> int:
    """The batch limit: env MAX_BATCH if set, else ``MAX_BATCH``."""
    raw = os.environ.get("MAX_BATCH", "").strip()
    if not raw:
        return MAX_BATCH
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InternalServerError(
            f"environment variable MAX_BATCH={raw!r} is not a positive integer"
        )
    return value


def parse_request(payload: Any, name: str) -> Request:
    """A single applicant ``{gre, gpa, rank}`` or a batch ``{"applicants": [...]}``."""
    if not isinstance(payload, Mapping):
        raise BadRequest(
            f"{name} must be a JSON object with gre, gpa and rank, or with applicants, "
            f"got {_describe(payload)}",
            name,
        )
    if "applicants" in payload:
        return Request(parse_applicants(payload["applicants"], max_batch()), batch=True)
    return Request([parse_applicant(payload)], batch=False)


# ------------------------------------------------------------------------- R runtime

# How the embedded R starts, unless the environment already says otherwise: attach no
# package (readRDS loads the namespaces the model refers to: stats, with its imports
# graphics, grDevices and utils; methods and datasets are never needed) and no JIT
# compiler (it loads the compiler package; the R code prediction runs is byte-compiled
# already, or too small to compile).
R_STARTUP_ENV = {"R_DEFAULT_PACKAGES": "NULL", "R_ENABLE_JIT": "0"}
# rpy2's options, plus: no .RData from the working directory, no site or user profile
# and environ files (a package's R_HOME/etc/Renviron is still read).
R_INIT_OPTIONS = (
    "rpy2",
    "--quiet",
    "--no-save",
    "--no-restore",
    "--no-site-file",
    "--no-init-file",
    "--no-environ",
)

_LOCK = threading.RLock()  # R is single-threaded; also guards the caches below
_rinterface: Any = None
_model: Optional["_Model"] = None


def packaged_r_home() -> Optional[str]:
    """The R shipped with this function: next to this file (one zip), else in a layer."""
    for candidate in (PACKAGED_R_HOME, LAYER_R_HOME):
        if os.path.isdir(candidate):
            return candidate
    return None


def _use_packaged_r_home() -> None:
    """Point R_HOME at the packaged R (see packaged_r_home), unless R_HOME is already set."""
    packaged = packaged_r_home()
    if not os.environ.get("R_HOME") and packaged:
        os.environ["R_HOME"] = packaged


def _r_lib_dir_without_subprocess(r_home: str) -> str:
    return os.path.join(r_home, "lib")


def _import_rinterface() -> Any:
    """Import rpy2.rinterface without running R or Rscript in a subprocess.

    rpy2 3.5 runs ``R RHOME`` when R_HOME is unset (set above when packaged) and, on
    import, ``Rscript -e 'cat(Sys.getenv("LD_LIBRARY_PATH"))'``. That value only feeds
    the LD_LIBRARY_PATH of child processes (the dynamic loader has read it long
    before), and a packaged Rscript carries build-time paths, so it is replaced here.
    """
    import rpy2.situation as situation

    probe = getattr(situation, "r_ld_library_path_from_subprocess", None)
    if probe is not None:
        situation.r_ld_library_path_from_subprocess = _r_lib_dir_without_subprocess
    try:
        import rpy2.rinterface as rinterface
    finally:
        if probe is not None:
            situation.r_ld_library_path_from_subprocess = probe
    return rinterface


def _initr_without_rscript(rinterface: Any) -> None:
    """Start the embedded R the way rpy2 3.5's ``initr_simple`` does.

    rpy2 3.6 dropped ``initr_simple``; its ``initr`` first runs Rscript to copy the
    environment R's front-end script would set (``_setrenvvars``), which a packaged R
    cannot do and Lambda should not pay for. Without it, these are initr's own steps.
    """
    simple = getattr(rinterface, "initr_simple", None)
    if simple is not None:
        simple()
        return
    from rpy2.rinterface_lib import embedded, openrlib

    with openrlib.rlock:
        embedded._initr()
        if hasattr(embedded, "set_python_process_info"):
            embedded.set_python_process_info()
        atexit.register(rinterface.endr, 0)
        rinterface._rinterface._register_external_symbols()
        rinterface._post_initr_setup()


def _check_r_home(r_home: Optional[str]) -> None:
    # R exits the whole process when it cannot find its base package: check first.
    base = os.path.join(r_home or "", "library", "base")
    if not r_home or not os.path.isdir(base):
        raise ModelUnavailable(
            f"R_HOME={r_home!r} is not an R installation ({base} is missing); "
            f"bundle R in {PACKAGED_R_HOME} (or a layer's {LAYER_R_HOME}) or set R_HOME"
        )


def _start_r() -> Any:
    """Start the embedded R once per process and return ``rpy2.rinterface``."""
    global _rinterface
    with _LOCK:
        if _rinterface is not None:
            return _rinterface
        _use_packaged_r_home()
        try:
            rinterface = _import_rinterface()
            from rpy2.rinterface_lib import callbacks, embedded, openrlib
        except Exception as exc:
            raise ModelUnavailable(f"cannot import rpy2: {exc}") from exc
        _check_r_home(openrlib.R_HOME)
        # Keep stdout for the JSON log lines; R's console output goes to stderr.
        callbacks.consolewrite_print = _write_to_stderr
        # initr_simple, unlike initr, does not run Rscript to copy R's environment.
        # rpy2 prepends R's lib dir to LD_LIBRARY_PATH, which only affects children;
        # R reads R_STARTUP_ENV while it starts. All of them are restored afterwards.
        saved = {name: os.environ.get(name) for name in ("LD_LIBRARY_PATH", *R_STARTUP_ENV)}
        try:
            for name, value in R_STARTUP_ENV.items():
                if not os.environ.get(name):
                    os.environ[name] = value
            if not embedded.isinitialized():
                embedded.set_initoptions(R_INIT_OPTIONS)
            _initr_without_rscript(rinterface)
        except Exception as exc:
            raise ModelUnavailable(f"R could not be started from {openrlib.R_HOME}: {exc}") from exc
        finally:
            for name, value in saved.items():
                _restore_env(name, value)
        _rinterface = rinterface
        return rinterface


def _write_to_stderr(text: str) -> None:
    sys.stderr.write(text)


def _restore_env(name: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


# How a model predicts is planned once, when it loads, by admission_model.R (next to
# this file): which inputs it takes and how (rank as a number or as a factor of the
# model's own levels), the ranks it knows, and whether its design is provably
# (1, gre, gpa, rank indicators or rank) in some order. Such a model is predicted
# directly: the model matrix is filled from Python and R computes X %*% beta and the
# inverse link exactly as predict.lm and predict.glm do. Every other model is predicted
# with predict() on a data frame built the way the model expects. Both give the bits of
# R's predict(model, newdata, type = "response"); the direct path skips the data frame,
# model frame and model matrix R would build per call.
MODEL_PLAN_R = os.path.join(HANDLER_DIR, "admission_model.R")
DIRECT = "direct"
PREDICT = "predict"
# What fills a column of the direct path's model matrix (admission_model.R's columns).
_INTERCEPT, _GRE, _GPA, _RANK, _RANK_IS = 0, 1, 2, 3, 10
# Applicants both paths predict when a model loads; they must agree to the last bit.
_PROBE_GRE = (200.0, 433.7, 800.0)
_PROBE_GPA = (0.0, 2.71, 4.0)


_plan: Any = None  # admission_model.R's plan(), once per process


def _cell(code: int) -> Callable[[Applicant], float]:
    """What an applicant puts in a model-matrix column of admission_model.R's ``code``."""
    if code == _INTERCEPT:
        return lambda a: 1.0
    if code == _GRE:
        return operator.attrgetter("gre")
    if code == _GPA:
        return operator.attrgetter("gpa")
    if code == _RANK:
        return lambda a: float(a.rank)
    level = code - _RANK_IS
    return lambda a: 1.0 if a.rank == level else 0.0


def _plan_function(rinterface: Any) -> Any:
    """admission_model.R's ``plan``, evaluated once with the stats namespace as parent."""
    global _plan
    ri = rinterface
    with _LOCK:
        if _plan is None:
            with open(MODEL_PLAN_R, encoding="utf-8") as source:
                code = source.read()
            stats = ri.baseenv["getNamespace"](ri.StrSexpVector(["stats"]))
            env = ri.baseenv["new.env"](parent=stats)
            ri.baseenv["eval"](ri.parse(code), env)
            _plan = env["plan"]
        return _plan


class _Model:
    """A model loaded into R, and how it predicts (see admission_model.R).

    ``method`` is ``DIRECT`` or ``PREDICT``; ``unmatched`` names the checks of the direct
    design a ``PREDICT`` model failed. ``ranks`` are the ranks it can predict.
    """

    def __init__(self, rinterface: Any, model: Any, source: str) -> None:
        ri = rinterface
        self.source = source
        self._ri = ri
        plan = _plan_function(ri)(model)
        fields = dict(zip(plan.names, plan))
        if "error" in fields:
            raise ModelUnavailable(f"the model in {source} cannot be served: {fields['error'][0]}")
        self.kind = str(fields["kind"][0])
        self.bounded = bool(fields["bounded"][0])
        self.ranks = tuple(int(r) for r in fields["ranks"])
        self.rank_levels = tuple(str(level) for level in fields["rank_levels"])
        self.unmatched: tuple[str, ...] = tuple(fields["unmatched"])
        self._predict = fields["predict"]
        self.method = PREDICT
        if isinstance(fields["direct"], ri.SexpClosure):
            self._direct = fields["direct"]
            self._cells = tuple(_cell(int(code)) for code in fields["columns"])
            self._row = ri.FloatSexpVector([1.0] * len(self._cells))
            self._row_values = self._row.memoryview()  # flat: taken before dim makes it a matrix
            self._row.do_slot_assign("dim", ri.IntSexpVector([1, len(self._cells)]))
            self.method = DIRECT
            self._check_direct_path()

    def _check_direct_path(self) -> None:
        """Fall back to predict() unless both paths agree on every probe, bit for bit."""
        probes = [
            Applicant(gre=gre, gpa=gpa, rank=rank)
            for rank in self.ranks
            for gre in _PROBE_GRE
            for gpa in _PROBE_GPA
        ]
        expected = [p.hex() for p in self._predict_frame(probes)]
        batch = [p.hex() for p in self._direct_batch(probes)]
        singles = [self._direct_single(a).hex() for a in probes]
        if batch != expected or singles != expected:
            self.method = PREDICT
            self.unmatched = ("probes",)

    def describe(self) -> dict[str, Any]:
        """How the model predicts, for logs and the release manifest."""
        return {
            "kind": self.kind,
            "method": self.method,
            "unmatched": list(self.unmatched),
            "ranks": list(self.ranks),
            "rank_levels": list(self.rank_levels),
        }

    def check_ranks(self, applicants: Sequence[Applicant], batch: bool) -> None:
        """A 400 naming rank and the model's levels for a rank the model never saw."""
        for index, applicant in enumerate(applicants):
            if applicant.rank not in self.ranks:
                field = f"applicants[{index}].rank" if batch else "rank"
                known = ", ".join(str(r) for r in self.ranks)
                raise BadRequest(
                    f"{field} must be one of {known} (the levels of rank this model was "
                    f"fitted with), got {applicant.rank}",
                    field,
                )

    def probabilities(self, applicants: Sequence[Applicant], batch: bool = True) -> list[float]:
        """P(admit) for each applicant, from one R call."""
        self.check_ranks(applicants, batch)
        with _LOCK:
            if self.method == PREDICT:
                result = self._predict_frame(applicants)
            elif len(applicants) == 1:
                result = [self._direct_single(applicants[0])]
            else:
                result = self._direct_batch(applicants)
        valid = all(0.0 <= p <= 1.0 if self.bounded else math.isfinite(p) for p in result)
        if len(result) != len(applicants) or not valid:
            bounds = "[0, 1]" if self.bounded else "the finite numbers"
            raise InternalServerError(
                f"model {self.source} returned {len(result)} values for {len(applicants)} "
                f"applicants, or a value outside {bounds}"
            )
        return result

    def _direct_single(self, applicant: Applicant) -> float:
        row = self._row_values  # the 1 x p model matrix
        for at, cell in enumerate(self._cells):
            row[at] = cell(applicant)
        return self._direct(self._row)[0]

    def _direct_batch(self, applicants: Sequence[Applicant]) -> list[float]:
        ri = self._ri
        columns = array.array("d")  # the n x p model matrix, column-major
        for cell in self._cells:
            columns.extend(map(cell, applicants))
        matrix = ri.FloatSexpVector.from_memoryview(memoryview(columns))
        matrix.do_slot_assign("dim", ri.IntSexpVector([len(applicants), len(self._cells)]))
        # list(), not .memoryview().tolist(): rpy2 3.5 drops a reference to None with
        # each memoryview of a result, which aborts Python 3.11 at exit after enough calls.
        return list(self._direct(matrix))

    def _predict_frame(self, applicants: Sequence[Applicant]) -> list[float]:
        ri = self._ri
        result = self._predict(
            ri.FloatSexpVector([a.gre for a in applicants]),
            ri.FloatSexpVector([a.gpa for a in applicants]),
            ri.FloatSexpVector([float(a.rank) for a in applicants]),
        )
        return list(result)


def _read_model(rinterface: Any, path: str) -> _Model:
    """readRDS ``path`` and plan how it predicts; raise ModelUnavailable otherwise."""
    ri = rinterface
    try:
        with _LOCK:
            sexp = ri.baseenv["readRDS"](ri.StrSexpVector([path]))
    except Exception as exc:  # rpy2's RRuntimeError: corrupt, truncated, not an .rds
        raise ModelUnavailable(f"R cannot read the model file {path}: {exc}".strip()) from exc
    try:
        with _LOCK:
            model = _Model(ri, sexp, path)
    except HandlerError:
        raise
    except Exception as exc:
        raise ModelUnavailable(
            f"the model in {path} cannot predict from gre, gpa and rank: {exc}".strip()
        ) from exc
    if model.method != DIRECT:
        _log_line({"event": "model_predicts_with_predict", "path": path, **model.describe()})
    return model


# ----------------------------------------------------------------------- model source


@dataclasses.dataclass(frozen=True)
class ModelSource:
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
        _log_line({"event": "model_cache_invalid", "path": final, "reason": "sha256 differs"})
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


def _load_model() -> _Model:
    source = model_source()
    if source.path is not None:
        if not os.path.isfile(source.path):
            origin = "MODEL_PATH" if os.environ.get("MODEL_PATH") else "bundled model"
            raise ModelUnavailable(f"model file {source.path} ({origin}) does not exist")
        _verify_sha256(source.path, expected_sha256(required=False), f"model file {source.path}")
        return _read_model(_start_r(), source.path)
    # Verified against MODEL_SHA256 before R reads it: bytes R cannot read are the
    # configured object's own, and downloading them again would not help.
    return _read_model(_start_r(), fetch_model(source.bucket, source.key))


def get_model() -> _Model:
    """The model, loaded at the first call in this process (a failure is retried)."""
    global _model
    with _LOCK:
        if _model is None:
            _model = _load_model()
        return _model


def reset_model_cache() -> None:
    """Forget the loaded model (R itself stays up); the next prediction reloads it."""
    global _model
    with _LOCK:
        _model = None


# ------------------------------------------------------------------------ predictions


def admit_probabilities(applicants: Sequence[Mapping[str, Any]]) -> list[float]:
    """P(admit) for each applicant (``{"gre", "gpa", "rank"}``), in one R call."""
    if isinstance(applicants, (list, tuple)) and not applicants:
        return []
    return get_model().probabilities(parse_applicants(applicants))


def admit_probability(gre: Any, gpa: Any, rank: Any) -> float:
    """P(admit) for one applicant; numbers or numeric strings."""
    applicant = parse_applicant({"gre": gre, "gpa": gpa, "rank": rank})
    return get_model().probabilities([applicant], batch=False)[0]


def pred_admit(gre: Any, gpa: Any, rank: Any) -> bool:
    """True when the applicant is more likely admitted than not (P > 0.5)."""
    return admit_probability(gre, gpa, rank) > 0.5


def _result(probability: float) -> dict[str, Any]:
    return {"result": probability > 0.5, "probability": probability}


def _answer(request: Request) -> dict[str, Any]:
    probabilities = get_model().probabilities(request.applicants, request.batch)
    if request.batch:
        return {"results": [_result(p) for p in probabilities]}
    return _result(probabilities[0])


# ---------------------------------------------------------------------- Lambda events


@dataclasses.dataclass
class _Invocation:
    """What one invocation logs: no event bodies, no secrets."""

    request_id: Optional[str]
    transport: str
    kind: str = ""
    count: int = 0
    outcome: str = "ok"
    status: int = 200
    error_type: Optional[str] = None
    field: Optional[str] = None
    error: Optional[str] = None

    def record(self, request: Request) -> None:
        self.kind = "batch" if request.batch else self.transport
        self.count = len(request.applicants)

    def fail(self, err: HandlerError) -> None:
        self.outcome = "client_error" if err.http_status < 500 else "server_error"
        self.status = err.http_status
        self.error_type = err.error_type
        self.field = err.field
        if err.http_status >= 500:
            self.error = err.message


def _log_line(record: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def _log_invocation(invocation: _Invocation, started: float) -> None:
    record = dataclasses.asdict(invocation)
    record["kind"] = invocation.kind or invocation.transport
    record["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
    optional = ("error_type", "field", "error")
    _log_line({k: v for k, v in record.items() if v is not None or k not in optional})


def _as_handler_error(exc: Exception) -> HandlerError:
    if isinstance(exc, HandlerError):
        return exc
    traceback.print_exc(file=sys.stderr)
    return InternalServerError(f"unexpected {type(exc).__name__}: {exc}")


def _is_proxy_event(event: Any) -> bool:
    """API Gateway REST (v1, ``httpMethod``) or HTTP API (v2, ``requestContext.http``)."""
    if not isinstance(event, Mapping):
        return False
    context = event.get("requestContext")
    return "httpMethod" in event or (isinstance(context, Mapping) and "http" in context)


def _http_method(event: Mapping[str, Any]) -> str:
    method = event.get("httpMethod")
    if method is None:
        context = event.get("requestContext")
        http = context.get("http") if isinstance(context, Mapping) else None
        method = http.get("method") if isinstance(http, Mapping) else None
    return method.upper() if isinstance(method, str) else ""


def _decode_body(body: str, base64_encoded: bool) -> Any:
    if base64_encoded:
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise BadRequest(
                "body is marked isBase64Encoded but is not base64 UTF-8", "body"
            ) from exc
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(
            'body must be JSON, e.g. {"gre": 800, "gpa": 4, "rank": 1}', "body"
        ) from exc


def _proxy_payload(event: Mapping[str, Any]) -> Any:
    """The request from the body, or from the query string when there is no body."""
    body = event.get("body")
    if body is None or body == "":
        params = event.get("queryStringParameters")
        if params is None:
            return {}
        if not isinstance(params, Mapping):
            raise BadRequest("queryStringParameters must be an object", "queryStringParameters")
        return params
    if isinstance(body, Mapping):  # test consoles sometimes pass the body parsed
        return body
    if not isinstance(body, str):
        raise BadRequest(f"body must be a JSON string, got {_describe(body)}", "body")
    return _decode_body(body, event.get("isBase64Encoded") is True)


def cors_headers() -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": os.environ.get("CORS_ALLOW_ORIGIN") or "*",
        "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
        "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
        "Content-Type": "application/json",
    }


def _http_response(status: int, payload: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": cors_headers(),
        "body": "" if payload is None else json.dumps(payload, allow_nan=False),
        "isBase64Encoded": False,
    }


def _error_body(err: HandlerError) -> dict[str, Any]:
    if err.http_status < 500:
        return {"error": err.error_type, "message": err.message, "field": err.field}
    return {"error": err.error_type, "message": err.public_message, "request_id": err.request_id}


def _handle_proxy(event: Mapping[str, Any], invocation: _Invocation) -> dict[str, Any]:
    if _http_method(event) == "OPTIONS":
        invocation.status = 204
        return _http_response(204, None)
    try:
        request = parse_request(_proxy_payload(event), "body")
        invocation.record(request)
        return _http_response(200, _answer(request))
    except Exception as exc:
        err = _as_handler_error(exc)
        err.request_id = invocation.request_id
        invocation.fail(err)
        return _http_response(err.http_status, _error_body(err))


def _public_fault(err: HandlerError) -> Exception:
    """What a direct invocation raises to Lambda's runtime client: its FaultException when
    the handler runs under it (the managed Python runtimes and the clean-host test load
    awslambdaric before the handler), which reports errorType and errorMessage with an empty
    stackTrace; a caller sees no frame, path or line of this file. Elsewhere the error."""
    ric = sys.modules.get("awslambdaric.lambda_runtime_exception")
    fault = getattr(ric, "FaultException", None)
    if fault is None:
        return err
    return fault(err.error_type, str(err), [])


def _handle_direct(event: Any, invocation: _Invocation) -> dict[str, Any]:
    try:
        request = parse_request(event, "event")
        invocation.record(request)
        return _answer(request)
    except Exception as exc:
        err = _as_handler_error(exc)
        err.request_id = invocation.request_id
        invocation.fail(err)
        public = _public_fault(err)
        if public is exc:
            raise
        if public is err:
            raise err from exc
        raise public from None  # the runtime client's fault: no frames; the log has the cause


def lambda_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Answer a direct invocation, a batch, or an API Gateway (v1/v2) proxy event."""
    started = time.perf_counter()
    request_id = getattr(context, "aws_request_id", None)
    proxy = _is_proxy_event(event)
    invocation = _Invocation(
        request_id=request_id if isinstance(request_id, str) else None,
        transport="proxy" if proxy else "direct",
    )
    try:
        if proxy:
            return _handle_proxy(event, invocation)
        return _handle_direct(event, invocation)
    finally:
        _log_invocation(invocation, started)


# ----------------------------------------------------------------------- command line


def check_model(path: str) -> dict[str, Any]:
    """Load the model at ``path`` as a request would, and say how it predicts."""
    os.environ["MODEL_PATH"] = path
    reset_model_cache()
    model = get_model()
    started = time.perf_counter()
    model.probabilities([Applicant(gre=800.0, gpa=4.0, rank=model.ranks[0])])
    warm_ms = (time.perf_counter() - started) * 1000.0
    return {"path": path, **model.describe(), "warm_call_ms": round(warm_ms, 4)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python3 handler.py check-model PATH``: what a release's build host runs before
    publishing. Prints how the model predicts as JSON, or the load-time error (exit 1)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "check-model":
        sys.stderr.write("usage: python3 handler.py check-model MODEL.rds\n")
        return 2
    try:
        with contextlib.redirect_stdout(sys.stderr):  # log lines; stdout is the report
            report = check_model(args[1])
    except HandlerError as exc:
        sys.stderr.write(f"{exc.message}\n")
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
