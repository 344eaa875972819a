"""The Debian kind's fallback_suites: a package whose tarball the mirror does not serve
(this machine's mirror lists trixie's mgcv 1.9-3 but serves only sid's 1.9-4) is taken
from the first fallback suite that has it served, from that suite's signed index; a pinned
version is never swapped. A Debian-like archive with two suites, served from local files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ansible_collections.r_lambda.release.plugins.module_utils import r_packages as rp
from r_repos import debian_archive, served, signing_key, stop_agent

pytestmark = pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("gpgv")),
                                reason="gpg and gpgv make and check the test archive's key")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("gnupg")
    keyring = signing_key(home)
    root = tmp_path_factory.mktemp("debian")
    debian_archive(root, home, "stable", {
        "mgcv": ("1.9-3-1", "mgcv", {"Imports": "nlme"}),
        "nlme": ("3.1.168-1", "nlme", {"Version": "3.1-168"}),
    })
    debian_archive(root, home, "unstable", {"mgcv": ("1.9-4-1", "mgcv", {"Imports": "nlme"})})
    stop_agent(home)
    (root / "pool/main/m/mgcv/mgcv_1.9-3.orig.tar.gz").unlink()  # listed, not served
    with served(root) as url:
        yield url, keyring


def repo(archive, tmp_path: Path, fallback: list[str]) -> rp.DebianRepository:
    url, keyring = archive
    return rp.DebianRepository(url, "stable", str(tmp_path / "cache"), str(keyring),
                               fallback_suites=fallback)


def test_a_tarball_the_mirror_does_not_serve_comes_from_a_fallback_suite(archive, tmp_path):
    url, _ = archive
    lock = rp.resolve(repo(archive, tmp_path, ["unstable"]), ["mgcv"])

    assert [(p.name, p.version, p.url.removeprefix(url)) for p in lock.packages] == [
        ("nlme", "3.1-168", "/pool/main/n/nlme/nlme_3.1.168.orig.tar.gz"),
        ("mgcv", "1.9-4", "/pool/main/m/mgcv/mgcv_1.9-4.orig.tar.gz"),
    ]
    served_file = Path(next((tmp_path / "cache").glob("debian/pool/mgcv_1.9-4.orig.tar.gz")))
    assert lock.packages[1].sha256 == rp.file_digest(str(served_file))
    assert lock.repository["fallback_suites"] == ["unstable"]


def test_without_a_fallback_or_with_a_pin_the_missing_tarball_is_an_error(archive, tmp_path):
    with pytest.raises(rp.NotFoundError, match=r"Debian stable's index lists mgcv 1.9-3, but"):
        rp.resolve(repo(archive, tmp_path, []), ["mgcv"])
    with pytest.raises(rp.NotFoundError, match=r"does not serve its tarball"):
        rp.resolve(repo(archive, tmp_path, ["unstable"]), ["mgcv==1.9-3"])
