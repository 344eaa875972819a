"""plugins/modules/zipapp.py: package folders packed into one runnable file."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from module_loading import load

REPO = Path(__file__).resolve().parents[4]
zipapp = load("zipapp_module", REPO / "plugins" / "modules" / "zipapp.py")


@pytest.fixture
def package(tmp_path: Path) -> Path:
    folder = tmp_path / "greeter"
    (folder / "sub").mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "cli.py").write_text(
        "import sys\nfrom .sub.words import WORD\n\n"
        "def main():\n    print(WORD, *sys.argv[1:])\n    return 3\n"
    )
    (folder / "sub" / "__init__.py").write_text("")
    (folder / "sub" / "words.py").write_text("WORD = 'hello'\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"stale bytecode")
    (folder / "notes.txt").write_text("not Python")
    return folder


def test_the_zip_runs_its_entry_point_with_the_packages_and_its_exit_code(
    package: Path, tmp_path: Path
) -> None:
    # A second package the first imports, as local_function imports lambda_invoke.
    other = tmp_path / "src" / "punctuation"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("MARK = '!'\n")
    (package / "cli.py").write_text(
        "import sys\nfrom punctuation import MARK\nfrom .sub.words import WORD\n\n"
        "def main():\n    print(WORD, *sys.argv[1:], MARK)\n    return 3\n"
    )
    dest = tmp_path / "out" / "greeter.pyz"  # its folder does not exist yet
    assert zipapp.write(dest, zipapp.pack([package, other], "greeter.cli:main")) is True
    done = subprocess.run([sys.executable, str(dest), "world"], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (3, "hello world !\n")


def test_only_the_package_sources_go_in_the_same_bytes_each_time(package: Path) -> None:
    data = zipapp.pack([package], "greeter.cli:main")
    assert data == zipapp.pack([package], "greeter.cli:main")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == [
        "__main__.py",
        "greeter/__init__.py",
        "greeter/cli.py",
        "greeter/sub/__init__.py",
        "greeter/sub/words.py",
    ]


def test_an_unchanged_zip_is_not_written_again(package: Path, tmp_path: Path) -> None:
    dest = tmp_path / "greeter.pyz"
    data = zipapp.pack([package], "greeter.cli:main")
    assert zipapp.write(dest, data) is True
    mtime = dest.stat().st_mtime_ns
    assert zipapp.write(dest, data) is False
    assert dest.stat().st_mtime_ns == mtime
    (package / "sub" / "words.py").write_text("WORD = 'hi'\n")
    assert zipapp.write(dest, zipapp.pack([package], "greeter.cli:main")) is True
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("main", "message"),
    [
        ("greeter.cli", r"main='greeter.cli' is not module:function"),
        ("greeter.cli:1main", r"main='greeter.cli:1main' is not module:function"),
    ],
)
def test_a_bad_entry_point_is_named(package: Path, main: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        zipapp.pack([package], main)


def test_a_folder_without_init_is_refused(package: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(package / "sub", bare)
    (bare / "__init__.py").unlink()
    with pytest.raises(ValueError, match=r"packages: '.*bare' is not a package folder"):
        zipapp.pack([package, bare], "bare.words:main")
