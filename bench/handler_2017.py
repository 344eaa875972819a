"""The 2017 procedure's handler, rebuilt for the benchmark's baseline only (never shipped).

As the 2017 post did it: point R_HOME at the packaged R, import rpy2's high-level
``rpy2.robjects`` (R starts with its default packages), read the model at import time, and
predict through ``stats::predict`` on an R data frame built for each call. It exposes what
the benchmark calls, so the baseline is measured exactly as the project's handler is:
``lambda_handler`` for a direct call (through Lambda's runtime client, bench/in_host.py
cold), ``admit_probability``, ``admit_probabilities`` and ``get_model`` (warm figures,
bench/bench_predict.py).
"""

import os
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("R_HOME", os.path.join(HERE, "R"))
# R's JIT needs the compiler package, which the 2017 list of packages lacks: without this,
# R stops with "unable to initialize the JIT" (the project's handler sets it too).
os.environ.setdefault("R_ENABLE_JIT", "0")

from rpy2 import robjects  # noqa: E402  (R_HOME first, as in 2017)

# robjects.r["predict"] rather than importr("stats"): importr would add about 0.4 s of
# cold start here (it maps every function of the package), and the baseline should be
# the cheapest fair version of the 2017 handler, not a strawman.
_predict = robjects.r["predict"]
_RANK_LEVELS = robjects.StrVector(["1", "2", "3", "4"])
_MODEL = robjects.r["readRDS"](os.path.join(HERE, "admission.rds"))


@dataclass(frozen=True)
class _Source:
    source: str = "bundled"
    method: str = "predict.glm via rpy2.robjects (2017)"


def get_model() -> _Source:
    return _Source()


def admit_probabilities(applicants: list[dict]) -> list[float]:
    """P(admit) for each applicant, one predict() call on a data frame."""
    newdata = robjects.DataFrame({
        "gre": robjects.FloatVector([float(a["gre"]) for a in applicants]),
        "gpa": robjects.FloatVector([float(a["gpa"]) for a in applicants]),
        "rank": robjects.FactorVector(
            robjects.StrVector([str(int(a["rank"])) for a in applicants]), levels=_RANK_LEVELS),
    })
    return list(_predict(_MODEL, newdata, type="response"))


def admit_probability(gre: float, gpa: float, rank: int) -> float:
    return admit_probabilities([{"gre": gre, "gpa": gpa, "rank": rank}])[0]


def lambda_handler(event: dict, context: object) -> dict:
    probability = admit_probability(event["gre"], event["gpa"], event["rank"])
    return {"result": probability > 0.5, "probability": probability}
