"""pytest only: give the packaged checks (test_*.py here) a model when none is bundled.

In a deployment package admission.rds sits next to handler.py; in the repository it
does not, so the model is trained once per session (needs Rscript) and MODEL_PATH set.
"""

import os
import subprocess
from collections.abc import Iterator

import pytest

# The packaged checks import the handler's modules as top-level modules, as in a package's
# root: handler/ is on pytest's pythonpath (pyproject.toml).
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session", autouse=True)
def model_for_packaged_checks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if os.environ.get("MODEL_PATH") or os.path.isfile(os.path.join(HERE, "admission.rds")):
        yield
        return
    out = tmp_path_factory.mktemp("packaged-checks") / "admission.rds"
    train = [
        "Rscript",
        os.path.join(HERE, "model", "train.R"),
        os.path.join(HERE, "model", "binary.csv"),
        str(out),
    ]
    done = subprocess.run(train, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    os.environ["MODEL_PATH"] = str(out)
    try:
        yield
    finally:
        os.environ.pop("MODEL_PATH", None)
