"""A model loaded into R, and how it predicts.

How a model predicts is planned once, when it loads, by admission_model.R (next to this
file): which inputs it takes and how (rank as a number or as a factor of the model's own
levels), the ranks it knows, and whether its design is provably (1, gre, gpa, rank
indicators or rank) in some order. Such a model is predicted directly: the model matrix
is filled from Python and R computes X %*% beta and the inverse link exactly as
predict.lm and predict.glm do. Every other model is predicted with predict() on a data
frame built the way the model expects. Both give the bits of R's predict(model, newdata,
type = "response"); the direct path skips the data frame, model frame and model matrix R
would build per call. Models of the other kinds admission_model.R knows (gam,
randomForest, ranger, rpart, nnet, multinom) are predicted with their package's predict
method, named in the plan, whose package is loaded once, when the model loads. A model the
handler cannot serve is refused, naming why (and the R package to ship, if that is it).
"""

import array
import math
import operator
import os
from collections.abc import Callable, Sequence
from typing import Any

from admission_errors import (
    BadRequest,
    HandlerError,
    InternalServerError,
    ModelUnavailable,
    log_line,
)
from admission_r_session import R_LOCK
from admission_requests import Applicant

MODEL_PLAN_R = os.path.join(os.path.dirname(os.path.abspath(__file__)), "admission_model.R")
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
    with R_LOCK:
        if _plan is None:
            with open(MODEL_PLAN_R, encoding="utf-8") as source:
                code = source.read()
            stats = ri.baseenv["getNamespace"](ri.StrSexpVector(["stats"]))
            env = ri.baseenv["new.env"](parent=stats)
            ri.baseenv["eval"](ri.parse(code), env)
            _plan = env["plan"]
        return _plan


class LoadedModel:
    """A model loaded into R, and how it predicts (see admission_model.R).

    ``method`` is ``DIRECT`` or ``PREDICT``; ``unmatched`` names the checks of the direct
    design a ``PREDICT`` model failed (``class`` for a kind other than glm and lm).
    ``ranks`` are the ranks it can predict; ``call`` the R call that predicts, naming the
    method; ``packages`` the R packages it loaded for that.
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
        self.call = str(fields["call"][0])
        self.packages = tuple(str(name) for name in fields["packages"])
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
            "call": self.call,
            "packages": list(self.packages),
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
        with R_LOCK:
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


def read_model(rinterface: Any, path: str) -> LoadedModel:
    """readRDS ``path`` and plan how it predicts; raise ModelUnavailable otherwise."""
    ri = rinterface
    try:
        with R_LOCK:
            sexp = ri.baseenv["readRDS"](ri.StrSexpVector([path]))
    except Exception as exc:  # rpy2's RRuntimeError: corrupt, truncated, not an .rds
        raise ModelUnavailable(f"R cannot read the model file {path}: {exc}".strip()) from exc
    try:
        with R_LOCK:
            model = LoadedModel(ri, sexp, path)
    except HandlerError:
        raise
    except Exception as exc:
        raise ModelUnavailable(
            f"the model in {path} cannot predict from gre, gpa and rank: {exc}".strip()
        ) from exc
    if model.method != DIRECT:
        log_line({"event": "model_predicts_with_predict", "path": path, **model.describe()})
    return model
