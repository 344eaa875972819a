"""plugins/module_utils/r_packages.py: parsing, resolving over a CRAN-like repository
served from local files, the lock, renv.lock, and refusing a tarball the lock does not
name. The Debian kind: test_r_packages_debian.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.r_lambda.release.plugins.module_utils import r_packages as rp
from r_repos import cran_repo, served, tarball

REPO = Path(__file__).resolve().parents[4]


def test_dcf_paragraphs_keep_continued_values() -> None:
    text = ("Package: a\nDepends: R (>= 3.5.0),\n    methods\n\n\n"
            "Package: b\nFiles:\n 0123 10 b.dsc\n 4567 20 b.orig.tar.gz\n")
    assert rp.parse_dcf(text) == [
        {"Package": "a", "Depends": "R (>= 3.5.0),\nmethods"},
        {"Package": "b", "Files": "\n0123 10 b.dsc\n4567 20 b.orig.tar.gz"},
    ]


def test_a_dcf_line_that_is_no_field_is_an_error_naming_the_line() -> None:
    with pytest.raises(rp.RPackagesError, match="line 2"):
        rp.parse_dcf("Package: a\nnot a field\n")


def test_dependencies_with_and_without_constraints() -> None:
    parsed = rp.parse_dependencies("R (>= 3.5.0), methods,\n  Rcpp(>=1.0.1) , Matrix (== 1.7-3)")
    assert parsed == [rp.Dependency("R", ">=", "3.5.0"), rp.Dependency("methods"),
                      rp.Dependency("Rcpp", ">=", "1.0.1"), rp.Dependency("Matrix", "==", "1.7-3")]
    assert rp.parse_dependencies("") == rp.parse_dependencies(None) == []
    with pytest.raises(rp.RPackagesError, match="cannot read the dependency"):
        rp.parse_dependencies("Rcpp (~ 1)")


def test_r_and_base_packages_are_dropped_recommended_ones_are_kept() -> None:
    needs = rp.description_needs({
        "Depends": "R (>= 4.1.0), stats, Matrix",
        "Imports": "methods, grDevices, MASS, Matrix, nlme (>= 3.1-64)",
        "LinkingTo": "Rcpp, utils",
        "Suggests": "survival",
    })
    assert ([str(d) for d in needs.needs], [str(d) for d in needs.linking_to],
            needs.r_version_min) == (["Matrix", "MASS", "nlme (>= 3.1-64)"], ["Rcpp"], "4.1.0")


def test_versions_compare_as_r_does() -> None:
    assert rp.version_key("1.10-0") > rp.version_key("1.9-3")
    assert rp.version_key("3.1.168") == rp.version_key("3.1-168")
    assert rp.Dependency("x", ">=", "1.9-3").allows("1.10")
    assert not rp.Dependency("x", "<", "1.0").allows("1.0-0")


def test_debian_versions_give_the_upstream_version() -> None:
    assert [rp.debian_upstream_version(v) for v in
            ("4.7-1.1-1", "1:2.0.0+dfsg-1", "0.17.0-1", "1.7-3-1~bpo12+1")] == [
        "4.7-1.1", "2.0.0", "0.17.0", "1.7-3"]


def test_requests_are_names_optionally_pinned() -> None:
    assert rp.parse_request("mgcv") == ("mgcv", None)
    assert rp.parse_request(" ranger==0.16.0 ") == ("ranger", "0.16.0")
    for bad in ("ranger==", "1abc", "a b"):
        with pytest.raises(rp.RPackagesError, match="not an R package name"):
            rp.parse_request(bad)


def test_the_cache_follows_the_collections_rule() -> None:
    assert rp.cache_root({"R_LAMBDA_CACHE_DIR": "/c"}) == "/c"
    assert rp.cache_root({"XDG_CACHE_HOME": "/x"}) == "/x/r-lambda"


# --- a CRAN-like repository --------------------------------------------------------------

PACKAGES = {
    "top_1.0": {"Depends": "R (>= 4.0), stats, mid", "Imports": "methods, leaf (>= 2.0)",
                "Suggests": "nowhere"},
    "mid_0.5-1": {"Imports": "leaf, utils", "LinkingTo": "headers"},
    "leaf_2.1": {"Depends": "R (>= 3.5.0)"},
    "headers_1.2.3": {},
    "lonely_1.0": {"Imports": "absent"},
    "ping_1.0": {"Imports": "pong"},
    "pong_1.0": {"Imports": "ping"},
}
ARCHIVED = {"leaf_1.9": {}, "leaf_2.0": {"Imports": "headers"}}


@pytest.fixture(scope="module")
def cran(tmp_path_factory: pytest.TempPathFactory):
    root = cran_repo(tmp_path_factory.mktemp("cran"), PACKAGES, ARCHIVED)
    with served(root) as url:
        yield url, root


def repo_at(url: str, tmp_path: Path) -> rp.CranRepository:
    return rp.CranRepository(url, cache_dir=str(tmp_path / "cache"))


def test_a_package_resolves_with_its_dependencies_first(cran, tmp_path: Path) -> None:
    url, root = cran
    lock = rp.resolve(repo_at(url, tmp_path), ["top"])
    assert [(p.name, p.version, p.needs, p.linking_to) for p in lock.packages] == [
        ("headers", "1.2.3", [], []),
        ("leaf", "2.1", [], []),
        ("mid", "0.5-1", ["leaf"], ["headers"]),
        ("top", "1.0", ["mid", "leaf"], []),
    ]
    assert (lock.r_version_min, lock.repository) == (
        "4.0", {"kind": "cran", "url": url, "suite": None})
    top = lock.packages[-1]
    assert top.url == f"{url}/src/contrib/top_1.0.tar.gz"
    assert top.sha256 == rp.file_digest(str(root / "src/contrib/top_1.0.tar.gz"))
    assert any((tmp_path / "cache").glob("cran-*/top_1.0.tar.gz"))


def test_a_pinned_older_version_comes_from_the_archive(cran, tmp_path: Path) -> None:
    url, _ = cran
    lock = rp.resolve(repo_at(url, tmp_path), ["mid", "leaf==2.0"])
    assert [(p.name, p.version, p.url.removeprefix(url)) for p in lock.packages] == [
        ("headers", "1.2.3", "/src/contrib/headers_1.2.3.tar.gz"),
        ("leaf", "2.0", "/src/contrib/Archive/leaf/leaf_2.0.tar.gz"),
        ("mid", "0.5-1", "/src/contrib/mid_0.5-1.tar.gz"),
    ]


def test_a_pin_below_what_a_package_needs_is_an_error(cran, tmp_path: Path) -> None:
    url, _ = cran
    with pytest.raises(rp.RPackagesError, match=r"top needs leaf \(>= 2.0\); the repository "
                                                r"has leaf 1.9"):
        rp.resolve(repo_at(url, tmp_path), ["top", "leaf==1.9"])


def test_a_version_in_neither_place_is_an_error(cran, tmp_path: Path) -> None:
    url, _ = cran
    with pytest.raises(rp.NotFoundError, match=r"leaf 0.1 is neither current nor in the "
                                               r"archive"):
        rp.resolve(repo_at(url, tmp_path), ["leaf==0.1"])


def test_a_missing_dependency_names_it_and_who_needs_it(cran, tmp_path: Path) -> None:
    url, _ = cran
    with pytest.raises(rp.NotFoundError, match=r"R package absent, which lonely needs, cannot "
                                               r"be found: absent is not in"):
        rp.resolve(repo_at(url, tmp_path), ["lonely"])


def test_a_cycle_ends_the_resolution_with_an_error_naming_it(cran, tmp_path: Path) -> None:
    url, _ = cran
    with pytest.raises(rp.RPackagesError, match=r"cycle, R cannot install them: "
                                                r"ping, pong, ping"):
        rp.resolve(repo_at(url, tmp_path), ["ping"])


def test_base_packages_and_r_asked_for_are_skipped(cran, tmp_path: Path) -> None:
    url, _ = cran
    lock = rp.resolve(repo_at(url, tmp_path), ["stats", "R", "headers", "utils"])
    assert [p.name for p in lock.packages] == ["headers"]


def test_the_lock_round_trips_through_json(cran, tmp_path: Path) -> None:
    url, _ = cran
    lock = rp.resolve(repo_at(url, tmp_path), ["mid"])
    data = json.loads(lock.to_json())
    assert (data["lock_version"], list(data["packages"][0])) == (
        1, ["name", "version", "url", "sha256", "needs", "linking_to"])
    assert rp.Lock.from_json(lock.to_json()) == lock
    with pytest.raises(rp.RPackagesError, match="lock_version 2"):
        rp.Lock.from_json(json.dumps({**data, "lock_version": 2}))


def test_a_locked_tarball_with_other_bytes_is_refused(cran, tmp_path: Path) -> None:
    url, root = cran
    repo = repo_at(url, tmp_path)
    lock = rp.resolve(repo, ["headers"])
    assert rp.fetch_locked(lock, repo) == [str(next((tmp_path / "cache").glob("cran-*/h*")))]
    other = tarball(tmp_path / "other" / "headers_1.2.3.tar.gz", "headers", "1.2.3", Note="x")
    with pytest.raises(rp.ChecksumError) as refused:
        rp.verify_tarball(lock.packages[0], str(other))
    assert str(refused.value) == (
        f"headers 1.2.3: {other} has sha256 {rp.file_digest(str(other))}, the lock says "
        f"{lock.packages[0].sha256}; refusing it")
    # The repository now serves other bytes, and the cached copy was damaged: no use.
    served_file = root / "src/contrib/headers_1.2.3.tar.gz"
    good = served_file.read_bytes()
    next((tmp_path / "cache").glob("cran-*/h*")).write_bytes(b"damaged")
    served_file.write_bytes(other.read_bytes())
    try:
        with pytest.raises(rp.ChecksumError, match=r"headers 1.2.3: .*headers_1.2.3.tar.gz: "
                                                   r"sha256 [0-9a-f]{64}, expected"):
            rp.fetch_locked(lock, repo)
    finally:
        served_file.write_bytes(good)


def test_an_renv_lock_gives_names_and_versions_and_must_be_complete(cran, tmp_path) -> None:
    url, _ = cran
    renv = {"R": {"Version": "4.6.1"}, "Packages": {
        "mid": {"Package": "mid", "Version": "0.5-1", "Source": "Repository",
                "Repository": "CRAN", "Hash": "0123456789abcdef0123456789abcdef"},
        "leaf": {"Package": "leaf", "Version": "2.0", "Source": "Repository"},
        "headers": {"Package": "headers", "Version": "1.2.3", "Source": "Repository"},
    }}
    requests = rp.read_renv_lock(json.dumps(renv))
    assert requests == ["headers==1.2.3", "leaf==2.0", "mid==0.5-1"]
    lock = rp.resolve(repo_at(url, tmp_path), requests, closed=True)
    assert [(p.name, p.version) for p in lock.packages] == [
        ("headers", "1.2.3"), ("leaf", "2.0"), ("mid", "0.5-1")]
    del renv["Packages"]["headers"]
    with pytest.raises(rp.NotFoundError, match="headers, which leaf needs, is not in the lock"):
        rp.resolve(repo_at(url, tmp_path), rp.read_renv_lock(json.dumps(renv)), closed=True)
    renv["Packages"]["gh"] = {"Package": "gh", "Version": "1", "Source": "GitHub"}
    with pytest.raises(rp.RPackagesError, match="gh comes from GitHub"):
        rp.read_renv_lock(json.dumps(renv))


def test_the_command_writes_a_lock_and_checks_it(cran, tmp_path: Path) -> None:
    url, _ = cran
    out = tmp_path / "r.lock.json"
    env = {"R_LAMBDA_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    wrote = subprocess.run([sys.executable, str(REPO / "scripts" / "r-lock"), "--repo", url,
                            "--out", str(out), "mid"], capture_output=True, text=True, env=env,
                           check=False)
    assert wrote.returncode == 0, wrote.stderr
    assert "r-lock: 3 packages in" in wrote.stderr
    assert [p["name"] for p in json.loads(out.read_text())["packages"]] == [
        "headers", "leaf", "mid"]
    checked = subprocess.run([sys.executable, str(REPO / "scripts" / "r-lock"), "--check",
                              str(out)], capture_output=True, text=True, env=env, check=False)
    assert (checked.returncode, checked.stderr.strip()) == (
        0, f"r-lock: 3 tarballs match {out}")
    missing = subprocess.run([sys.executable, str(REPO / "scripts" / "r-lock"), "--repo", url,
                              "--out", "-", "absent"], capture_output=True, text=True, env=env,
                             check=False)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.startswith("r-lock: R package absent cannot be found")
