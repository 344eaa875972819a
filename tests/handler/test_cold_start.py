"""What the first load of R and the model leaves out: locale warnings, standard modules
rpy2 imports but the handler never uses.

(Process-level checks, each in a fresh interpreter, are in test_runtime.py: no program
run, no warning on stderr, R's errors kept off stdout.)
"""

import locale
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from handler_support import admission_r_session


@pytest.fixture
def no_locale_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in admission_r_session.R_LOCALE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_locale_variables_naming_a_locale_the_system_lacks_are_c_for_r(
    no_locale_env: pytest.MonkeyPatch,
) -> None:
    no_locale_env.setenv("LANG", "xx_XX.UTF-8")  # Lambda's en_US.UTF-8 on Amazon Linux 2023
    no_locale_env.setenv("LC_TIME", "yy_YY")
    no_locale_env.setenv("LC_COLLATE", "C.UTF-8")
    no_locale_env.setenv("LC_MONETARY", "POSIX")
    assert admission_r_session.missing_locales_as_c() == {"LC_TIME": "C", "LANG": "C"}


def test_lc_all_naming_a_locale_the_system_lacks_is_c_for_r(
    no_locale_env: pytest.MonkeyPatch,
) -> None:
    no_locale_env.setenv("LC_ALL", "xx_XX.UTF-8")
    assert admission_r_session.missing_locales_as_c() == {"LC_ALL": "C"}


def test_locales_the_system_has_or_none_are_left_alone(no_locale_env: pytest.MonkeyPatch) -> None:
    assert admission_r_session.missing_locales_as_c() == {}
    no_locale_env.setenv("LANG", "C.UTF-8")
    no_locale_env.setenv("LC_ALL", "")
    assert admission_r_session.missing_locales_as_c() == {}


def test_looking_for_locales_leaves_this_process_locale_as_it_was(
    no_locale_env: pytest.MonkeyPatch,
) -> None:
    no_locale_env.setenv("LANG", "xx_XX.UTF-8")
    no_locale_env.setenv("LC_PAPER", "C.UTF-8")
    before = locale.setlocale(locale.LC_ALL)
    admission_r_session.missing_locales_as_c()
    assert locale.setlocale(locale.LC_ALL) == before


@pytest.fixture
def probe_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A module of a new name whose code notes each run in a file, importable from tmp_path."""
    name, runs = f"deferred_probe_{uuid.uuid4().hex[:8]}", tmp_path / "runs"
    (tmp_path / f"{name}.py").write_text(f"open({str(runs)!r}, 'a').write('ran\\n')\nVALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, runs
    sys.modules.pop(name, None)


def test_a_deferred_module_runs_at_its_first_use_not_at_its_import(
    probe_module: tuple[str, Path],
) -> None:
    name, runs = probe_module
    admission_r_session.defer_imports([name])
    module = __import__(name)  # what `import name` binds
    assert not runs.exists()
    assert module.__name__ == name and module.__spec__.name == name  # still not run
    assert not runs.exists()
    assert module.VALUE == 42
    assert module.VALUE == 42
    assert runs.read_text() == "ran\n"
    assert type(module) is type(sys)  # a plain module from then on
    assert sys.modules[name] is module


def test_a_deferred_module_that_fails_fails_at_its_first_use_and_can_be_imported_again(
    probe_module: tuple[str, Path], tmp_path: Path
) -> None:
    name, _ = probe_module
    source = tmp_path / f"{name}.py"
    source.write_text("raise ImportError('broken')\n")
    admission_r_session.defer_imports([name])
    module = __import__(name)
    with pytest.raises(ImportError, match="broken"):
        _ = module.VALUE
    assert name not in sys.modules
    source.write_text("VALUE = 7\n")
    assert __import__(name).VALUE == 7


def test_modules_already_imported_or_not_found_are_left_alone() -> None:
    json_module = sys.modules["json"]
    admission_r_session.defer_imports(["json", "no_such_module_anywhere"])
    assert sys.modules["json"] is json_module
    assert "no_such_module_anywhere" not in sys.modules


def test_a_deferred_module_reading_itself_while_it_runs_sees_a_partial_module(
    probe_module: tuple[str, Path], tmp_path: Path
) -> None:
    name, _ = probe_module
    (tmp_path / f"{name}.py").write_text(
        "import sys\n"
        "try:\n    sys.modules[__name__].LATER\nexcept AttributeError:\n    SAW_PARTIAL = True\n"
        "LATER = 1\n"
    )
    admission_r_session.defer_imports([name])
    module = __import__(name)
    assert (module.LATER, module.SAW_PARTIAL) == (1, True)


def test_threads_using_a_deferred_module_at_once_run_its_code_once(
    probe_module: tuple[str, Path], tmp_path: Path
) -> None:
    name, runs = probe_module
    (tmp_path / f"{name}.py").write_text(
        f"import time\nopen({str(runs)!r}, 'a').write('ran\\n')\ntime.sleep(0.2)\nVALUE = 42\n"
    )
    admission_r_session.defer_imports([name])
    module = __import__(name)
    seen: list[int] = []
    threads = [threading.Thread(target=lambda: seen.append(module.VALUE)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [42] * 4
    assert runs.read_text() == "ran\n"
