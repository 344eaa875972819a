"""The embedded R: started once per process through rpy2's low-level ``rpy2.rinterface``.

R comes from the package (``R/`` next to this file, or a layer's ``/opt/R``) unless
R_HOME is set, and starts without running R, Rscript or any other program in a
subprocess, attaching no package. Importing this module loads neither rpy2 nor R.
README.md ("Environment") says which options and variables R starts with.
"""

import atexit
import os
import sys
import threading
import types
from collections.abc import Iterable
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

# Set, unless the environment sets it, while R loads utils (stats imports it, so every
# model needs it): its .onLoad then skips parsing R_HOME/etc/repositories (read.delim,
# about 5 ms of every cold start) into options("repos"), which only install.packages()
# reads.
UTILS_LOAD_ENV = {"R_REPOSITORIES": "NULL"}
# The variables R reads its locale from when it starts (main.c: LC_CTYPE, LC_COLLATE,
# LC_TIME, LC_MESSAGES, LC_MONETARY, LC_PAPER, LC_MEASUREMENT; never LC_NUMERIC).
R_LOCALE_VARIABLES = (
    "LC_ALL",
    "LC_CTYPE",
    "LC_COLLATE",
    "LC_TIME",
    "LC_MESSAGES",
    "LC_MONETARY",
    "LC_PAPER",
    "LC_MEASUREMENT",
    "LANG",
)
# utils' .onLoad records the OS for sessionInfo() (utils::osVersion) by running
# `which uname` and `uname -a` through /bin/sh: two child processes forked from this
# one, about 7 ms of every cold start, for a value no prediction reads. Loading utils
# while Sys.which finds no program skips both (osVersion is then NULL, as on a system
# without `which`); Sys.which is put back at once, even when the load fails.
LOAD_UTILS_R = """
local({
    base <- baseenv()
    which <- base$Sys.which
    locked <- bindingIsLocked("Sys.which", base)
    if (locked) unlockBinding("Sys.which", base)
    on.exit({
        assign("Sys.which", which, envir = base)
        if (locked) lockBinding("Sys.which", base)
    })
    assign("Sys.which", function(names) structure(rep("", length(names)), names = names),
           envir = base)
    invisible(loadNamespace("utils"))
})
"""

# Standard modules rpy2.situation and rpy2.rinterface import at the top but use only in
# functions the handler never calls: rpy2's command line and Rscript probes (argparse,
# shlex, subprocess), initr()'s copy of R's environment (tempfile, csv), R functions made
# from Python ones (inspect). Imported for real they took about 20 ms of every cold start
# in the Lambda stand-in (tempfile alone imports shutil, bz2, lzma and random; inspect
# imports ast, dis and tokenize); each one not imported yet is put in sys.modules as a
# deferred module, whose code runs at its first use, by whoever uses it.
DEFERRED_MODULES = ("argparse", "csv", "inspect", "shlex", "subprocess", "tempfile")

# R is single-threaded: every call into R holds this lock (the model's and the plan's
# caches are guarded by it too).
R_LOCK = threading.RLock()
_rinterface: Any = None
# Deferred modules (DEFERRED_MODULES) run one at a time; those whose code is running.
_DEFERRED_LOCK = threading.RLock()
_DEFERRED_RUNNING: set[str] = set()


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
    defer_imports(DEFERRED_MODULES)
    from rpy2 import situation

    probe = getattr(situation, "r_ld_library_path_from_subprocess", None)
    if probe is not None:
        situation.r_ld_library_path_from_subprocess = _r_lib_dir_without_subprocess
    try:
        from rpy2 import rinterface
    finally:
        if probe is not None:
            situation.r_ld_library_path_from_subprocess = probe
    return rinterface


class _DeferredModule(types.ModuleType):
    """A module whose code runs at the first access to an attribute it lacks.

    Unlike importlib.util.LazyLoader's modules, whose every attribute access runs the
    code (``import name`` itself reads ``__spec__``, so importing one loads it), this one
    answers ``__spec__``, ``__name__`` and the like from what the import system set. It
    becomes a plain module once its code has run; another thread waits for that.
    """

    def __getattr__(self, name: str) -> Any:
        with _DEFERRED_LOCK:  # reentrant: the module's own code may come back here
            # Exactly this class: once its code has run the module becomes a plain one.
            if type(self) is _DeferredModule:  # pylint: disable=unidiomatic-typecheck
                if self.__name__ in _DEFERRED_RUNNING:  # as any module while it runs
                    raise AttributeError(
                        f"partially initialized module {self.__name__!r} has no attribute {name!r}"
                    )
                _DEFERRED_RUNNING.add(self.__name__)
                try:
                    self.__spec__.loader.exec_module(self)
                except BaseException:
                    sys.modules.pop(self.__name__, None)  # the next import starts afresh
                    raise
                finally:
                    _DEFERRED_RUNNING.discard(self.__name__)
                self.__class__ = types.ModuleType
        return getattr(self, name)


def defer_imports(names: Iterable[str]) -> None:
    """Put each of the modules ``names`` that is not imported yet in sys.modules as a
    module whose code runs at the first use of one of its attributes (_DeferredModule):
    ``import name`` then binds it at once. A module found without a source or bytecode
    loader (built in, frozen) is left alone."""
    import importlib.machinery
    import importlib.util

    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        loaders = (importlib.machinery.SourceFileLoader, importlib.machinery.SourcelessFileLoader)
        if spec is None or not isinstance(spec.loader, loaders):
            continue
        module = _DeferredModule(name)
        module.__spec__ = spec
        module.__loader__ = spec.loader
        module.__file__ = spec.origin
        sys.modules[name] = module


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
    """Start the embedded R once per process, with utils loaded, and return
    ``rpy2.rinterface``."""
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
        # Keep stdout for the JSON log lines; R's console output goes to stderr, its
        # warnings and errors too (rpy2 logs those, which Lambda's runtime client
        # writes to stdout, cut into pieces).
        callbacks.consolewrite_print = _write_to_stderr
        callbacks.consolewrite_warnerror = _write_to_stderr
        # initr_simple, unlike initr, does not run Rscript to copy R's environment.
        # rpy2 prepends R's lib dir to LD_LIBRARY_PATH, which only affects children;
        # R reads R_STARTUP_ENV and the locale while it starts, R_REPOSITORIES while
        # utils loads. All of them are restored afterwards.
        names = ("LD_LIBRARY_PATH", *R_STARTUP_ENV, *UTILS_LOAD_ENV, *R_LOCALE_VARIABLES)
        saved = {name: os.environ.get(name) for name in names}
        try:
            for name, value in {**R_STARTUP_ENV, **UTILS_LOAD_ENV}.items():
                if not os.environ.get(name):
                    os.environ[name] = value
            os.environ.update(missing_locales_as_c())
            if not embedded.isinitialized():
                embedded.set_initoptions(R_INIT_OPTIONS)
            _initr_without_rscript(rinterface)
            rinterface.baseenv["eval"](rinterface.parse(LOAD_UTILS_R))
        except Exception as exc:
            raise ModelUnavailable(f"R could not be started from {openrlib.R_HOME}: {exc}") from exc
        finally:
            for name, value in saved.items():
                _restore_env(name, value)
        _rinterface = rinterface
        return rinterface


def missing_locales_as_c() -> dict[str, str]:
    """The locale variables (R_LOCALE_VARIABLES) that name a locale this system lacks,
    each mapped to "C", for R to start with.

    R falls back to "C" for such a locale anyway, but also writes "During startup -
    Warning messages: Setting LC_COLLATE failed, using "C"" (one line per category) to
    stderr, at every cold start on Lambda: its runtimes set LANG=en_US.UTF-8, and the
    Amazon Linux 2023 ones carry only the C, C.UTF-8 and POSIX locales.
    """
    exists: dict[str, bool] = {}
    missing = {}
    for name in R_LOCALE_VARIABLES:
        value = os.environ.get(name)
        if not value or value in ("C", "POSIX"):
            continue
        if value not in exists:
            exists[value] = _locale_exists(value)
        if not exists[value]:
            missing[name] = "C"
    return missing


def _locale_exists(name: str) -> bool:
    """Whether the C library can set locale ``name`` (this process's locale is unchanged:
    LC_MONETARY, which nothing here formats with, is set back at once)."""
    import locale  # here, not at the top: rpy2 imports it anyway, the handler need not

    current = locale.setlocale(locale.LC_MONETARY)
    try:
        locale.setlocale(locale.LC_MONETARY, name)
    except locale.Error:
        return False
    locale.setlocale(locale.LC_MONETARY, current)
    return True


def _write_to_stderr(text: str) -> None:
    sys.stderr.write(text)


def _restore_env(name: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
