"""Module r_lambda.release.r_packages, what lambda_package's resolve step runs on the
controller: names resolved, a lock read as it is, an renv.lock resolved for its versions,
every tarball fetched into the cache and a wrong sha256 refused naming the package, the
sha256 the lock expects and the one the bytes have. Over a CRAN-like repository served
from local files (r_repos)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_collections.r_lambda.release.plugins.module_utils import r_packages as rp
from ansible_collections.r_lambda.release.plugins.modules import r_packages as module
from r_repos import cran_repo, served

PACKAGES = {
    "top_1.0": {"Depends": "R (>= 4.0)", "Imports": "leaf, methods"},
    "leaf_2.1": {},
}


@pytest.fixture(scope="module")
def cran(tmp_path_factory: pytest.TempPathFactory):
    root = cran_repo(tmp_path_factory.mktemp("cran"), PACKAGES)
    with served(root) as url:
        yield url, root


def params(tmp_path: Path, **given: object) -> dict:
    return {"packages": [], "lock": None, "repository": {}, "cache_dir": str(tmp_path / "cache"),
            "keyring": rp.DEFAULT_KEYRING, **given}


def test_names_resolve_into_a_lock_and_checked_tarballs_in_the_cache(cran, tmp_path) -> None:
    url, root = cran

    done = module.run(params(tmp_path, packages=["top"], repository={"kind": "cran", "url": url}))

    assert done["source"] == "names" and done["changed"] is False
    assert [p["name"] for p in done["lock"]["packages"]] == ["leaf", "top"]
    assert done["lock"]["r_version_min"] == "4.0"
    top = done["tarballs"][1]
    assert Path(top["path"]).parent.parent == tmp_path / "cache"
    assert top["sha256"] == rp.file_digest(str(root / "src/contrib/top_1.0.tar.gz"))
    assert top["bytes"] == Path(top["path"]).stat().st_size
    assert (top["url"], top["needs"]) == (f"{url}/src/contrib/top_1.0.tar.gz", ["leaf"])


def test_a_lock_is_used_as_it_is_and_a_wrong_sha256_names_the_package_and_both_digests(
    cran, tmp_path: Path,
) -> None:
    url, root = cran
    lock = module.run(params(tmp_path, packages=["top"],
                             repository={"kind": "cran", "url": url}))["lock"]
    path = tmp_path / "r.lock.json"
    path.write_text(json.dumps(lock))
    # A lock is not resolved again: the repository setting is not even read.
    again = module.run(params(tmp_path, lock=str(path), repository={"kind": "?"}))
    assert again["source"] == "lock"

    actual = rp.file_digest(str(root / "src/contrib/leaf_2.1.tar.gz"))
    wrong = "0" * 64
    lock["packages"][0]["sha256"] = wrong
    path.write_text(json.dumps(lock))
    with pytest.raises(rp.ChecksumError) as refused:
        module.run(params(tmp_path, lock=str(path)))
    assert str(refused.value) == (
        f"leaf 2.1: {url}/src/contrib/leaf_2.1.tar.gz: sha256 {actual}, expected {wrong}; "
        "not kept")


def test_an_renv_lock_is_resolved_for_its_exact_versions(cran, tmp_path: Path) -> None:
    url, _ = cran
    path = tmp_path / "renv.lock"
    path.write_text(json.dumps({"R": {"Version": "4.5.0"}, "Packages": {
        "top": {"Package": "top", "Version": "1.0", "Source": "Repository"},
        "leaf": {"Package": "leaf", "Version": "2.1", "Source": "Repository"}}}))

    done = module.run(params(tmp_path, lock=str(path), repository={"kind": "cran", "url": url}))

    assert done["source"] == "renv.lock"
    found = [(p["name"], p["version"]) for p in done["tarballs"]]
    assert found == [("leaf", "2.1"), ("top", "1.0")]


def test_a_file_that_is_no_lock_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text("{}")
    with pytest.raises(rp.RPackagesError, match="neither an R package lock"):
        module.run(params(tmp_path, lock=str(path)))
