"""plugins/module_utils/r_packages.py, the debian kind: a Debian-like archive the tests
sign with a throwaway key and serve from local files, and (marked slow) Debian's own."""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from ansible_collections.r_lambda.release.plugins.module_utils import r_packages as rp
from r_repos import debian_archive, served, signing_key, stop_agent

pytestmark = pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("gpgv")),
                                reason="gpg and gpgv make and check the test archive's key")

SOURCES = {
    "r-cran-randomforest": ("4.7-1.2-1", "randomForest", {"Depends": "R (>= 4.1.0), stats"}),
    "rmatrix": ("1.7-3-1", "Matrix", {"Imports": "lattice, methods", "Depends": "R (>= 4.4)"}),
    "lattice": ("0.22-7-1", "lattice", {"Imports": "grid, grDevices"}),
    "rcpp": ("1.0.14-1", "Rcpp", {}),
    "r-cran-ranger": ("0.17.0-1", "ranger", {"Imports": "Rcpp, Matrix",
                                             "LinkingTo": "Rcpp, RcppEigen"}),
    "nlme": ("3.1.168-1", "nlme", {"Version": "3.1-168"}),
    "r-cran-broken": ("1.0-1", "broken", {"Imports": "notindebian"}),
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("gnupg")
    keyring = signing_key(home)
    root = debian_archive(tmp_path_factory.mktemp("debian"), home, "testing", dict(SOURCES))
    stop_agent(home)  # the archive is signed: nothing more needs the key
    with served(root) as url:
        yield url, root, keyring


def debian(archive, tmp_path: Path, **kwargs) -> rp.DebianRepository:
    url, _, keyring = archive
    return rp.DebianRepository(url, "testing", str(tmp_path / "cache"),
                               **({"keyring": str(keyring)} | kwargs))


def test_names_map_to_their_r_cran_binaries_and_versions_come_from_description(
        archive, tmp_path: Path) -> None:
    url, _, _ = archive
    lock = rp.resolve(debian(archive, tmp_path), ["randomForest", "nlme"])
    assert [(p.name, p.version, p.url.removeprefix(url)) for p in lock.packages] == [
        ("nlme", "3.1-168", "/pool/main/n/nlme/nlme_3.1.168.orig.tar.gz"),
        ("randomForest", "4.7-1.2",
         "/pool/main/r/r-cran-randomforest/r-cran-randomforest_4.7-1.2.orig.tar.gz"),
    ]
    assert (lock.repository, lock.r_version_min) == (
        {"kind": "debian", "url": url, "suite": "testing"}, "4.1.0")


def test_linking_to_is_resolved_and_an_unknown_dependency_is_named(archive, tmp_path) -> None:
    with pytest.raises(rp.NotFoundError, match=r"R package RcppEigen, which ranger needs, "
                                               r"cannot be found: RcppEigen is not in Debian "
                                               r"testing \(no binary r-cran-rcppeigen"):
        rp.resolve(debian(archive, tmp_path), ["ranger"])
    lock = rp.resolve(debian(archive, tmp_path), ["Matrix", "Rcpp"])
    assert [p.name for p in lock.packages] == ["lattice", "Rcpp", "Matrix"]


def test_only_the_archives_version_can_be_pinned(archive, tmp_path: Path) -> None:
    assert [p.version for p in rp.resolve(debian(archive, tmp_path), ["nlme==3.1-168"]).packages
            ] == ["3.1-168"]
    with pytest.raises(rp.RPackagesError, match=r"randomForest==4.6-14: Debian testing has "
                                                r"only randomForest 4.7-1.2"):
        rp.resolve(debian(archive, tmp_path), ["randomForest==4.6-14"])


def test_an_index_signed_by_another_key_is_refused(archive, tmp_path: Path) -> None:
    other = signing_key(tmp_path / "other")
    with pytest.raises(rp.RPackagesError, match="InRelease: no good signature by a key of"):
        rp.resolve(debian(archive, tmp_path, keyring=str(other)), ["nlme"])


def test_a_tampered_index_or_tarball_is_refused(archive, tmp_path: Path) -> None:
    _, root, _ = archive
    for path, match in (("dists/testing/main/source/Sources.xz", r"Sources.xz: sha256 .*, "
                         r"expected"), ("pool/main/n/nlme/nlme_3.1.168.orig.tar.gz",
                                        r"nlme_3.1.168.orig.tar.gz: sha256 .*, expected")):
        served_file = root / path
        good = served_file.read_bytes()
        served_file.write_bytes(good + b"\0")
        try:
            with pytest.raises(rp.ChecksumError, match=match):
                rp.resolve(debian(archive, tmp_path / path), ["nlme"])
        finally:
            served_file.write_bytes(good)


def test_the_index_and_tarballs_are_reused_from_the_cache(archive, tmp_path: Path) -> None:
    _, root, _ = archive
    rp.resolve(debian(archive, tmp_path), ["nlme"])
    cache = tmp_path / "cache" / "debian"
    index = rp.release_sha256((root / "dists/testing/Release").read_text(),
                              "main/source/Sources.xz")[0]
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()) == [
        f"index/{index}-Sources.xz", "pool/nlme_3.1.168.orig.tar.gz"]
    tarball = root / "pool/main/n/nlme/nlme_3.1.168.orig.tar.gz"
    good = tarball.read_bytes()
    tarball.unlink()
    try:
        assert [p.name for p in rp.resolve(debian(archive, tmp_path), ["nlme"]).packages] == [
            "nlme"]
    finally:
        tarball.write_bytes(good)


def debian_reachable() -> bool:
    try:
        urllib.request.urlopen(f"{rp.DEFAULT_DEBIAN_MIRROR}/dists/"
                               f"{rp.DEFAULT_DEBIAN_SUITE}/InRelease", timeout=10).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_models_packages_resolve_from_debians_own_archive(tmp_path: Path) -> None:
    if not debian_reachable():
        pytest.skip(f"{rp.DEFAULT_DEBIAN_MIRROR} is not reachable")
    repo = rp.DebianRepository(cache_dir=str(tmp_path / "cache"))
    started = time.monotonic()
    lock = rp.resolve(repo, ["randomForest", "rpart", "nnet", "ranger"])
    print(f"resolved {len(lock.packages)} in {time.monotonic() - started:.1f} s")
    names = [p.name for p in lock.packages]
    assert {"randomForest", "rpart", "nnet", "ranger", "Rcpp", "RcppEigen", "Matrix"} <= set(
        names)
    assert names.index("Rcpp") < names.index("RcppEigen") < names.index("ranger")
    assert rp.fetch_locked(lock, repo)
