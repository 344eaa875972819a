"""The embedded R: started once per process through rpy2's low-level ``rpy2.rinterface``.

R comes from the package (``R/`` next to this file, or a layer's ``/opt/R``) unless
R_HOME is set, and starts without running R or Rscript in a subprocess, attaching no
package. Importing this module loads neither rpy2 nor R. README.md ("Environment") says
which options and variables R starts with.
"""

import atexit
import os
import sys
import threading
from typing import Any, Optional

from admission_errors import ModelUnavailable

PACKAGED_R_HOME = os.path.join(os.path.dirname(os.path.abspath(__file__)), "R")
# Where R is when it ships in a Lambda layer (layers are unpacked under /opt).
LAYER_R_HOME = "/opt/R"

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

# R is single-threaded: every call into R holds this lock (the model's and the plan's
# caches are guarded by it too).
R_LOCK = threading.RLock()
_rinterface: Any = None


def packaged_r_home() -> Optional[str]:
    """The R shipped with this function: next to this file (one zip), else in a layer."""
    for candidate in (PACKAGED_R_HOME, LAYER_R_HOME):
        if os.path.isdir(candidate):
            return candidate
    return None


def use_packaged_r_home() -> None:
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


def start_r() -> Any:
    """Start the embedded R once per process and return ``rpy2.rinterface``."""
    global _rinterface
    with R_LOCK:
        if _rinterface is not None:
            return _rinterface
        use_packaged_r_home()
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
