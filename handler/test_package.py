"""Checks of a deployment package on a clean host (stdlib only: python3 run_checks.py).

EXPECT_LIBR_UNDER=DIR additionally checks that the libR.so this process maps after R
starts lives under DIR (the package), not in a system R. EXPECT_PYTHON=X.Y checks the
checks run on the target runtime's Python; EXPECT_READ_ONLY=DIR[:DIR...] that this process
cannot write in those folders (Lambda's task root and /opt) but can write in /tmp.

The checks hold for any model the release ships: test_predictions_are_identical_to_r_predict
proves, with the package's own R, that the handler gives the very bits R's predict() gives
for newdata built the way the model expects (rank a number, or a factor of its levels),
for a glm or lm and for the other kinds the handler serves (a forest's probability of
class "1", ...).
"""

import json
import os
import sys
import unittest

import admission_r_session

import handler

HERE = os.path.dirname(os.path.abspath(__file__))


def _proxy_event(body: dict) -> dict:
    return {"httpMethod": "POST", "path": "/admit", "body": json.dumps(body)}


def _grid() -> list:
    """The model's ranks x gre 200..800 step 25 x gpa 0..4 step 0.125."""
    return [
        {"gre": 200 + 25 * g, "gpa": p / 8, "rank": rank}
        for rank in handler.get_model().ranks
        for g in range(25)
        for p in range(33)
    ]


# R's own prediction as written at a prompt for each kind of model the handler serves
# (handler/README.md, "Other kinds of model"): the probability of class "1" for a
# classifier, the prediction of a regression, type = "response" for a glm, lm or gam.
_R_PREDICT = """
function(model, gre, gpa, rank) {
  packages <- c(gam = "mgcv", randomForest = "randomForest", ranger = "ranger",
                rpart = "rpart", multinom = "nnet", nnet = "nnet")
  kind <- intersect(class(model), names(packages))[1L]
  if (!is.na(kind)) loadNamespace(packages[[kind]])
  forest <- inherits(model, "randomForest")
  levels <- if (forest) model$forest$xlevels$rank else model$xlevels$rank
  if (is.null(levels)) levels <- attr(model, "xlevels")$rank
  class <- if (inherits(model, "ranger")) {
    "numeric"
  } else if (forest) {
    if (is.character(levels)) "factor" else "numeric"
  } else {
    classes <- attr(stats::terms(model), "dataClasses")
    if ("rank" %in% names(classes)) classes[["rank"]] else "numeric"
  }
  rank <- switch(class,
    numeric = rank,
    character = as.character(rank),
    factor = factor(as.character(rank), levels = levels),
    ordered = factor(as.character(rank), levels = levels, ordered = TRUE))
  newdata <- data.frame(gre = gre, gpa = gpa, rank = rank, stringsAsFactors = FALSE)
  predict <- stats::predict
  switch(if (is.na(kind)) "glm" else kind,
    glm = predict(model, newdata = newdata, type = "response"),
    gam = predict(model, newdata, type = "response"),
    randomForest = if (model$type == "classification") {
      predict(model, newdata, type = "prob")[, "1"]
    } else {
      predict(model, newdata)
    },
    ranger = {
      p <- predict(model, newdata)$predictions
      if (is.matrix(p)) p[, "1"] else p
    },
    rpart = if (model$method == "class") {
      predict(model, newdata, type = "prob")[, "1"]
    } else {
      predict(model, newdata)
    },
    nnet = predict(model, newdata, type = "raw")[, 1],
    multinom = predict(model, newdata, type = "probs"))
}
"""


def _r_predict(applicants: list) -> list:
    """R's own predict(readRDS(model), data.frame(gre, gpa, rank), ...) (_R_PREDICT), rank
    given as the model was fitted with it (a number, or a factor of its levels)."""
    ri = admission_r_session.start_r()
    with admission_r_session.R_LOCK:
        model = ri.baseenv["readRDS"](ri.StrSexpVector([handler.get_model().source]))
        predict = ri.baseenv["eval"](ri.parse(_R_PREDICT))
        columns = [
            ri.FloatSexpVector([float(a[name]) for a in applicants])
            for name in ("gre", "gpa", "rank")
        ]
        return list(predict(model, *columns))


def _rank() -> int:
    """A rank the model knows (a model fitted without rank 1 does not know rank 1)."""
    return handler.get_model().ranks[0]


def _bits(values: list) -> list:
    return [float(v).hex() for v in values]


def _mapped_libr_paths() -> list:
    with open("/proc/self/maps") as maps:
        paths = {line.split(None, 5)[-1].strip() for line in maps if "/libR.so" in line}
    return sorted(paths)


class PackageTest(unittest.TestCase):
    def test_proxy_event_answers_200_with_the_probability(self) -> None:
        applicant = {"gre": 800, "gpa": 4, "rank": _rank()}
        response = handler.lambda_handler(_proxy_event(applicant), None)
        self.assertEqual(response["statusCode"], 200)
        body = json.loads(response["body"])
        [expected] = _r_predict([applicant])
        self.assertEqual(_bits([body["probability"]]), _bits([expected]))
        self.assertIs(body["result"], expected > 0.5)

    def test_batch_of_three_answers_in_order(self) -> None:
        low, high = handler.get_model().ranks[-1], _rank()
        applicants = [
            {"gre": 800, "gpa": 4, "rank": low},
            {"gre": 520, "gpa": 3.1, "rank": high},
            {"gre": 800, "gpa": 4, "rank": low},
        ]
        response = handler.lambda_handler({"applicants": applicants}, None)
        probabilities = [r["probability"] for r in response["results"]]
        self.assertEqual(_bits(probabilities), _bits(_r_predict(applicants)))
        results = [r["result"] for r in response["results"]]
        self.assertEqual(results, [p > 0.5 for p in probabilities])

    def test_bad_input_proxy_event_answers_400_naming_the_field(self) -> None:
        response = handler.lambda_handler(_proxy_event({"gre": 800, "gpa": 4, "rank": 7}), None)
        self.assertEqual(response["statusCode"], 400)
        body = json.loads(response["body"])
        self.assertEqual(body["error"], "BadRequest")
        self.assertEqual(body["field"], "rank")

    def test_predictions_are_identical_to_r_predict(self) -> None:
        applicants = _grid()
        singles = [handler.admit_probability(a["gre"], a["gpa"], a["rank"]) for a in applicants]
        batch = handler.admit_probabilities(applicants)
        expected = _bits(_r_predict(applicants))
        self.assertEqual(_bits(batch), expected)
        self.assertEqual(_bits(singles), expected)
        for a in applicants[::50]:  # and against predict() on a one-row data frame
            single = handler.admit_probability(a["gre"], a["gpa"], a["rank"])
            self.assertEqual(_bits([single]), _bits(_r_predict([a])))

    def test_every_packaged_r_package_loads(self) -> None:
        """Each R package in the package's R library (R's own and the model's: randomForest,
        mgcv...) loads with the packaged R: its shared object and the libraries that needs
        are found (no dyn.load failure), and so is every package it imports."""
        ri = admission_r_session.start_r()
        with admission_r_session.R_LOCK:
            library = os.path.join(str(ri.baseenv["R.home"]()[0]), "library")
            # An installed package has its Meta/package.rds; a folder without one is none
            # (Debian's R library holds "translations", only message catalogues).
            names = sorted(
                name
                for name in os.listdir(library)
                if os.path.isfile(os.path.join(library, name, "Meta", "package.rds"))
            )
            failed = {}
            for name in names:
                try:
                    ri.baseenv["loadNamespace"](ri.StrSexpVector([name]))
                except Exception as exc:  # rpy2's RRuntimeError carries R's message
                    failed[name] = str(exc).strip()
        self.assertIn("base", names)
        self.assertEqual(failed, {}, f"R packages that do not load from {library}")

    def test_libr_is_loaded_from_the_expected_directory(self) -> None:
        expected = os.environ.get("EXPECT_LIBR_UNDER")
        if not expected:
            self.skipTest("EXPECT_LIBR_UNDER is not set")
        handler.admit_probability(800, 4, _rank())  # starts R
        mapped = _mapped_libr_paths()
        self.assertTrue(mapped, "no libR.so is mapped into this process")
        root = os.path.realpath(expected)
        for path in mapped:
            real = os.path.realpath(path)
            under = os.path.commonpath([real, root]) == root
            self.assertTrue(under, f"libR.so {real} is not under {root}")

    def test_runs_on_the_target_runtimes_python(self) -> None:
        expected = os.environ.get("EXPECT_PYTHON")
        if not expected:
            self.skipTest("EXPECT_PYTHON is not set")
        self.assertEqual(f"{sys.version_info[0]}.{sys.version_info[1]}", expected)

    def test_only_tmp_is_writable_and_predictions_still_work(self) -> None:
        folders = [f for f in os.environ.get("EXPECT_READ_ONLY", "").split(":") if f]
        if not folders:
            self.skipTest("EXPECT_READ_ONLY is not set")
        handler.admit_probability(800, 4, _rank())  # R and the model loaded, no write outside /tmp
        for folder in folders:
            probe_path = os.path.join(folder, ".write-probe")
            refused = self.assertRaises(OSError, msg=f"{folder} is writable")
            with self.subTest(folder=folder), refused:
                open(probe_path, "w").close()
        with open(os.path.join("/tmp", f".write-probe-{os.getpid()}"), "w") as probe:
            probe.write("ok")
        os.unlink(probe.name)


if __name__ == "__main__":
    unittest.main()
