"""R packages a model needs, resolved into a lock (issue #24, its foundation).

A request is a list of R package names (``name`` or ``name==version``). They are resolved
with their ``Depends``, ``Imports`` and ``LinkingTo`` (never ``Suggests``), recursively,
against one repository, and the result is a lock: every package with its version, the URL
of its source tarball, that tarball's sha256 and what it needs, in install order
(dependencies first). R itself and R's base packages are dropped; the recommended ones
(Matrix, MASS, mgcv, nlme, rpart, survival...) are ordinary packages here.

Two kinds of repository:

- ``cran``: a CRAN-like URL (``src/contrib/PACKAGES``, tarballs under ``src/contrib/`` and
  older versions under ``src/contrib/Archive/<name>/``). CRAN's index has MD5 sums, not
  sha256: the lock records the sha256 of the downloaded tarball.
- ``debian``: Debian's archive, whose ``Sources`` index carries CRAN's tarballs as the
  ``.orig`` tarballs of the ``r-cran-*`` source packages. The index is checked against the
  sha256 the signed ``InRelease`` lists (``gpgv`` and Debian's keyring), and each tarball
  against the index. Only the suite's version of a package exists.

Each package's own ``DESCRIPTION`` (read from its tarball) is what its dependencies are
taken from. Downloads are kept under ``<machine-wide cache>/r-packages`` and used again only
while their sha256 matches. The format of the lock is in docs/r-packages.md; a thin CLI is
scripts/r-lock (``make r-lock``). Standard library only, plus the ``gpgv`` program.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url

# Shipped with R itself: never resolved, never in a lock.
BASE_PACKAGES = frozenset({
    "base", "compiler", "datasets", "graphics", "grDevices", "grid", "methods", "parallel",
    "splines", "stats", "stats4", "tcltk", "tools", "utils",
})
LOCK_VERSION = 1
DEFAULT_CRAN_URL = "https://cloud.r-project.org"
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Debian's stable suite (its r-base is R 4.5.0). The release builds R 4.6.1, whose r-base
# only sid carries; sid drops each version as the next arrives, so pins would not last.
DEFAULT_DEBIAN_SUITE = "trixie"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
USER_AGENT = "r-lambda-r-packages/1"
TIMEOUT_SECONDS = 60


class RPackagesError(Exception):
    """Any failure of resolving, fetching or verifying R packages; the message says what to do."""


class NotFoundError(RPackagesError):
    pass


class ChecksumError(RPackagesError):
    pass


# --- parsing ---------------------------------------------------------------------------


def parse_dcf(text: str) -> list[dict[str, str]]:
    """Paragraphs of a Debian control file (CRAN's PACKAGES and DESCRIPTION, Debian's
    Sources): ``Field: value`` lines, continuation lines starting with a space or tab,
    paragraphs separated by blank lines. A continued value keeps its line breaks."""
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, last = {}, None
        elif line[0] in " \t":
            if last is None:
                raise RPackagesError(f"DCF line {number} continues no field: {line!r}")
            current[last] += "\n" + line.strip()
        elif ":" in line:
            name, value = line.split(":", 1)
            last = name.strip()
            current[last] = value.strip()
        elif not line.startswith("#"):
            raise RPackagesError(f"DCF line {number} is neither a field nor a continuation: "
                                 f"{line!r}")
    if current:
        paragraphs.append(current)
    return paragraphs


@dataclass(frozen=True)
class Dependency:
    name: str
    op: str | None = None  # >=, >, ==, <=, <
    version: str | None = None

    def allows(self, version: str) -> bool:
        if self.op is None or self.version is None:
            return True
        have, want = version_key(version), version_key(self.version)
        return {">=": have >= want, ">": have > want, "==": have == want,
                "<=": have <= want, "<": have < want}[self.op]

    def __str__(self) -> str:
        return self.name if self.op is None else f"{self.name} ({self.op} {self.version})"


_DEPENDENCY = re.compile(r"^([A-Za-z][A-Za-z0-9.]*)\s*(?:\(\s*(>=|<=|==|>|<)\s*([^)\s]+)\s*\))?$")


def parse_dependencies(value: str | None) -> list[Dependency]:
    """``R (>= 3.5.0), methods, Rcpp (>= 1.0.1)`` as Dependency entries, R included."""
    found = []
    for part in (value or "").split(","):
        part = " ".join(part.split())
        if not part:
            continue
        match = _DEPENDENCY.match(part)
        if not match:
            raise RPackagesError(f"cannot read the dependency {part!r} in {value!r}")
        found.append(Dependency(*match.groups()))
    return found


def version_key(version: str) -> tuple[int, ...]:
    """R's package_version order: the numbers between dots and dashes."""
    parts = re.split(r"[.-]", version.strip())
    if not all(p.isdigit() for p in parts):
        raise RPackagesError(f"{version!r} is not an R package version")
    return tuple(int(p) for p in parts)


def parse_request(text: str) -> tuple[str, str | None]:
    """``randomForest`` or ``randomForest==4.7-1.2`` as (name, version or None)."""
    name, sep, version = text.strip().partition("==")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9.]*", name) or (sep and not version):
        raise RPackagesError(f"{text!r} is not an R package name, optionally with ==version")
    return name, version or None


@dataclass(frozen=True)
class Needs:
    """What a DESCRIPTION asks for beyond R and its base packages."""

    needs: list[Dependency]
    linking_to: list[Dependency]
    r_version_min: str | None


def description_needs(description: Mapping[str, str]) -> Needs:
    needs: list[Dependency] = []
    r_min = None
    for dep in (parse_dependencies(description.get("Depends"))
                + parse_dependencies(description.get("Imports"))):
        if dep.name == "R":
            if dep.op in (">=", ">") and dep.version:
                r_min = dep.version
        elif dep.name not in BASE_PACKAGES and dep.name not in {d.name for d in needs}:
            needs.append(dep)
    linking_to = [d for d in parse_dependencies(description.get("LinkingTo"))
                  if d.name != "R" and d.name not in BASE_PACKAGES]
    return Needs(needs, linking_to, r_min)


def debian_upstream_version(version: str) -> str:
    """``1:4.7-1.1-1`` -> ``4.7-1.1``; ``2.0.0+dfsg-1`` -> ``2.0.0``."""
    upstream = version.split(":", 1)[-1]
    if "-" in upstream:
        upstream = upstream.rsplit("-", 1)[0]
    return re.split(r"[+~]", upstream)[0]


# --- downloads and the cache -------------------------------------------------------------


def cache_root(environ: Mapping[str, str] | None = None) -> str:
    """The machine-wide cache (the same rule as plugins/lookup/cache_dir.py)."""
    env = os.environ if environ is None else environ
    if env.get("R_LAMBDA_CACHE_DIR"):
        return os.path.abspath(os.path.expanduser(env["R_LAMBDA_CACHE_DIR"]))
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(xdg), "r-lambda")


def default_cache_dir() -> str:
    return os.path.join(cache_root(), "r-packages")


def file_digest(path: str, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_url(url: str) -> bytes:
    try:
        with open_url(url, http_agent=USER_AGENT, timeout=TIMEOUT_SECONDS) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        if error.code in (404, 410):
            raise NotFoundError(f"{url}: not found ({error.code})") from error
        raise RPackagesError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError, UrlsConnectionError) as error:
        raise RPackagesError(f"{url}: cannot be read ({error})") from error


def fetch(url: str, path: str, sha256: str | None = None, md5: str | None = None) -> str:
    """``url`` at ``path``, reusing a cached copy only when ``sha256`` (or ``md5``) is
    known and matches; a download that matches neither is refused and not kept.
    Returns the sha256 of the file."""
    want = sha256 or md5
    algorithm = "sha256" if sha256 else "md5"
    if want and os.path.exists(path) and file_digest(path, algorithm) == want:
        return sha256 or file_digest(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = read_url(url)
    have = hashlib.new(algorithm, data).hexdigest()
    if want and have != want:
        raise ChecksumError(f"{url}: {algorithm} {have}, expected {want}; not kept")
    handle, part = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".part")
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    os.chmod(part, 0o644)
    os.replace(part, path)
    return sha256 or hashlib.sha256(data).hexdigest()


def read_description(tarball: str, name: str | None = None) -> dict[str, str]:
    """The DESCRIPTION of an R source tarball (``<name>/DESCRIPTION``, or the only
    top-level one)."""
    try:
        with tarfile.open(tarball, "r:*") as archive:
            candidates = [m for m in archive.getmembers()
                          if m.isfile() and m.name.lstrip("./").count("/") == 1
                          and m.name.endswith("/DESCRIPTION")]
            exact = [m for m in candidates if name and m.name.lstrip("./") == f"{name}/DESCRIPTION"]
            chosen = (exact or candidates)[:1]
            if not chosen or (not exact and len(candidates) > 1):
                raise RPackagesError(f"{tarball}: no single <package>/DESCRIPTION in it")
            stream = archive.extractfile(chosen[0])
            if stream is None:
                raise RPackagesError(f"{tarball}: {chosen[0].name} is not a regular file")
            text = stream.read().decode("utf-8", errors="replace")
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as error:
        raise RPackagesError(f"{tarball}: not a readable tarball ({error})") from error
    paragraphs = parse_dcf(text)
    if not paragraphs or "Package" not in paragraphs[0] or "Version" not in paragraphs[0]:
        raise RPackagesError(f"{tarball}: its DESCRIPTION has no Package or Version")
    return paragraphs[0]


# --- repositories ------------------------------------------------------------------------


@dataclass
class Candidate:
    """One version of a package a repository offers."""

    name: str
    version: str
    url: str
    sha256: str | None = None  # known before downloading (Debian's index)
    md5: str | None = None  # CRAN's index
    filename: str = ""
    pinned: bool = False  # asked for with ==version


class Repository(Protocol):
    def describe(self) -> dict[str, str | None]: ...

    def candidate(self, name: str, version: str | None) -> Candidate: ...

    def download(self, candidate: Candidate) -> tuple[str, str]: ...


class CranRepository:
    """A CRAN-like repository at ``url``."""

    kind = "cran"

    def __init__(self, url: str = DEFAULT_CRAN_URL, cache_dir: str | None = None) -> None:
        self.url = url.rstrip("/")
        tag = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        self.cache = os.path.join(cache_dir or default_cache_dir(), f"cran-{tag}")
        self._index: dict[str, dict[str, str]] | None = None

    def describe(self) -> dict[str, str | None]:
        return {"kind": self.kind, "url": self.url, "suite": None}

    def index(self) -> dict[str, dict[str, str]]:
        if self._index is None:
            base = f"{self.url}/src/contrib"
            try:
                text = gzip.decompress(read_url(f"{base}/PACKAGES.gz")).decode("utf-8")
            except NotFoundError:
                text = read_url(f"{base}/PACKAGES").decode("utf-8")
            self._index = {}
            for entry in parse_dcf(text):
                known = self._index.get(entry["Package"])
                if not known or version_key(entry["Version"]) > version_key(known["Version"]):
                    self._index[entry["Package"]] = entry
        return self._index

    def candidate(self, name: str, version: str | None) -> Candidate:
        entry = self.index().get(name)
        if entry and version in (None, entry["Version"]):
            filename = f"{name}_{entry['Version']}.tar.gz"
            return Candidate(name, entry["Version"], f"{self.url}/src/contrib/{filename}",
                             md5=entry.get("MD5sum"), filename=filename)
        if version is None:
            raise NotFoundError(f"{name} is not in {self.url}/src/contrib/PACKAGES")
        filename = f"{name}_{version}.tar.gz"
        return Candidate(name, version, f"{self.url}/src/contrib/Archive/{name}/{filename}",
                         filename=filename)

    def download(self, candidate: Candidate) -> tuple[str, str]:
        path = os.path.join(self.cache, candidate.filename)
        try:
            sha256 = fetch(candidate.url, path, sha256=candidate.sha256, md5=candidate.md5)
        except NotFoundError as error:
            raise NotFoundError(f"{candidate.name} {candidate.version} is neither current nor "
                                f"in the archive of {self.url} ({error})") from error
        return path, sha256


def verify_inrelease(data: bytes, keyring: str) -> str:
    """The Release text of a clearsigned ``InRelease``, after ``gpgv`` found a good
    signature by a key of ``keyring``."""
    if not shutil.which("gpgv"):
        raise RPackagesError("gpgv is needed to check Debian's InRelease (apt-get install gpgv)")
    if not os.path.exists(keyring):
        raise RPackagesError(f"the keyring {keyring} is missing (package debian-archive-keyring)")
    with tempfile.TemporaryDirectory() as scratch:
        signed, plain = os.path.join(scratch, "InRelease"), os.path.join(scratch, "Release")
        with open(signed, "wb") as stream:
            stream.write(data)
        done = subprocess.run(["gpgv", "--keyring", keyring, "--output", plain, signed],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RPackagesError(f"InRelease: no good signature by a key of {keyring}: "
                                 f"{done.stderr.strip()}")
        with open(plain, encoding="utf-8") as stream:
            return stream.read()


def release_sha256(release: str, path: str) -> tuple[str, int]:
    """The sha256 and size a Release lists for ``path`` (e.g. main/source/Sources.xz)."""
    fields = parse_dcf(release)[0] if release.strip() else {}
    for line in fields.get("SHA256", "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == path:
            return parts[0], int(parts[1])
    raise RPackagesError(f"the Release lists no SHA256 for {path}")


class DebianRepository:
    """Debian's archive: the ``r-cran-*`` source packages of one suite."""

    kind = "debian"

    def __init__(self, mirror: str = DEFAULT_DEBIAN_MIRROR, suite: str = DEFAULT_DEBIAN_SUITE,
                 cache_dir: str | None = None, keyring: str | None = DEFAULT_KEYRING,
                 component: str = "main", fallback_suites: Iterable[str] = ()) -> None:
        self.mirror, self.suite, self.keyring = mirror.rstrip("/"), suite, keyring
        self.component = component
        self.cache = os.path.join(cache_dir or default_cache_dir(), "debian")
        self._index: dict[str, dict[str, str]] | None = None
        # Suites whose tarball is taken when the mirror does not serve this suite's (a
        # partial mirror): each a DebianRepository of its own, made when first needed.
        self.fallback_suites = list(fallback_suites)
        self._fallbacks: dict[str, DebianRepository] = {}

    def describe(self) -> dict[str, str | None]:
        described = {"kind": self.kind, "url": self.mirror, "suite": self.suite}
        if self.fallback_suites:
            described["fallback_suites"] = list(self.fallback_suites)
        return described

    def release(self) -> str:
        dists = f"{self.mirror}/dists/{self.suite}"
        if self.keyring is None:  # unsigned: only where the caller asked for it
            return read_url(f"{dists}/Release").decode("utf-8")
        return verify_inrelease(read_url(f"{dists}/InRelease"), self.keyring)

    def index(self) -> dict[str, dict[str, str]]:
        """Source paragraphs by the lowercase R name of their ``r-cran-*`` binary."""
        if self._index is not None:
            return self._index
        member = f"{self.component}/source/Sources.xz"
        sha256, _size = release_sha256(self.release(), member)
        path = os.path.join(self.cache, "index", f"{sha256}-Sources.xz")
        fetch(f"{self.mirror}/dists/{self.suite}/{member}", path, sha256=sha256)
        self._index = {}
        for entry in r_cran_paragraphs(path):
            for binary in entry.get("Binary", "").replace("\n", " ").split(","):
                binary = binary.strip()
                if binary.startswith("r-cran-"):
                    self._index[binary[len("r-cran-"):]] = entry
        return self._index

    def candidate(self, name: str, version: str | None) -> Candidate:
        entry = self.index().get(name.lower())
        if entry is None:
            raise NotFoundError(f"{name} is not in Debian {self.suite} (no binary "
                                f"r-cran-{name.lower()} in {self.component}/source/Sources)")
        available = debian_upstream_version(entry["Version"])
        if version is not None and version_key(version) != version_key(available):
            raise RPackagesError(
                f"{name}=={version}: Debian {self.suite} has only {name} {available} "
                f"(source {entry['Package']} {entry['Version']}); ask for that version, "
                f"or use a cran repository")
        for line in entry.get("Checksums-Sha256", "").splitlines():
            parts = line.split()
            if len(parts) == 3 and re.search(r"\.orig\.tar\.(gz|xz|bz2)$", parts[2]):
                url = f"{self.mirror}/{entry['Directory']}/{parts[2]}"
                return Candidate(name, available, url, sha256=parts[0], filename=parts[2],
                                 pinned=version is not None)
        raise RPackagesError(f"{name}: Debian's source {entry['Package']} lists no .orig "
                             f"tarball")

    def fallback(self, suite: str) -> DebianRepository:
        if suite not in self._fallbacks:
            self._fallbacks[suite] = DebianRepository(
                self.mirror, suite, os.path.dirname(self.cache), self.keyring, self.component)
        return self._fallbacks[suite]

    def download(self, candidate: Candidate) -> tuple[str, str]:
        """The candidate's tarball; when the mirror does not serve it, the same package from
        the first fallback suite that has it served (the candidate is updated to name it).
        A pinned version is never swapped for another."""
        path = os.path.join(self.cache, "pool", candidate.filename)
        try:
            return path, fetch(candidate.url, path, sha256=candidate.sha256)
        except NotFoundError as error:
            for suite in self.fallback_suites:
                try:
                    other = self.fallback(suite).candidate(candidate.name, None)
                    if candidate.pinned and version_key(other.version) != version_key(
                            candidate.version):
                        continue
                    found = self.fallback(suite).download(other)
                except NotFoundError:
                    continue
                for name in ("version", "url", "sha256", "filename"):
                    setattr(candidate, name, getattr(other, name))
                return found
            raise NotFoundError(
                f"Debian {self.suite}'s index lists {candidate.name} {candidate.version}, but "
                f"{self.mirror} does not serve its tarball ({error}); try another suite or a "
                f"cran repository") from error


def r_cran_paragraphs(path: str) -> Iterable[dict[str, str]]:
    """The paragraphs of a Sources.xz that build an ``r-cran-*`` binary, read line by line
    (the whole index is about 60 MB of text)."""
    block: list[str] = []
    with lzma.open(path, "rt", encoding="utf-8") as stream:
        for line in itertools.chain(stream, ["\n"]):
            if line.strip():
                block.append(line)
                continue
            text = "".join(block)
            if "r-cran-" in text:
                entry = parse_dcf(text)[0]
                if "r-cran-" in entry.get("Binary", ""):
                    yield entry
            block = []


def repository(kind: str = "debian", url: str | None = None, suite: str | None = None,
               cache_dir: str | None = None, keyring: str | None = DEFAULT_KEYRING,
               fallback_suites: Iterable[str] = ()) -> Repository:
    """A repository from the lock's ``repository`` fields (or the CLI's)."""
    if kind == "cran":
        return CranRepository(url or DEFAULT_CRAN_URL, cache_dir)
    if kind == "debian":
        return DebianRepository(url or DEFAULT_DEBIAN_MIRROR, suite or DEFAULT_DEBIAN_SUITE,
                                cache_dir, keyring, fallback_suites=fallback_suites)
    raise RPackagesError(f"repository kind {kind!r}: cran or debian")


# --- the lock ----------------------------------------------------------------------------


@dataclass
class LockedPackage:
    name: str
    version: str
    url: str
    sha256: str
    needs: list[str] = field(default_factory=list)
    linking_to: list[str] = field(default_factory=list)


@dataclass
class Lock:
    repository: dict[str, str | None]
    packages: list[LockedPackage]
    r_version_min: str | None = None

    def to_json(self) -> str:
        return json.dumps({
            "lock_version": LOCK_VERSION,
            "r_version_min": self.r_version_min,
            "repository": self.repository,
            "packages": [vars(p) for p in self.packages],
        }, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Lock:
        data = json.loads(text)
        if data.get("lock_version") != LOCK_VERSION:
            raise RPackagesError(f"lock_version {data.get('lock_version')!r}: this reader "
                                 f"knows {LOCK_VERSION}")
        try:
            packages = [LockedPackage(**p) for p in data["packages"]]
        except (KeyError, TypeError) as error:
            raise RPackagesError(f"not an R package lock: {error}") from error
        return cls(data["repository"], packages, data.get("r_version_min"))


def resolve(repo: Repository, requests: Iterable[str], closed: bool = False) -> Lock:
    """The lock of ``requests`` (``name`` or ``name==version``) and everything they need.
    With ``closed``, the requests are the whole set (an renv.lock): a package they need
    but do not list is an error rather than resolved."""
    pins: dict[str, str | None] = {}
    for text in requests:
        name, version = parse_request(text)
        if name in BASE_PACKAGES or name == "R":
            continue
        if pins.get(name, version) != version:
            raise RPackagesError(f"{name} is asked for twice: {pins[name]} and {version}")
        pins[name] = version
    found: dict[str, tuple[LockedPackage, Needs]] = {}
    queue: list[tuple[str, str | None]] = [(name, None) for name in pins]
    while queue:
        name, needed_by = queue.pop(0)
        if name in found:  # also the guard against cycles
            continue
        if needed_by and closed and name not in pins:
            raise NotFoundError(f"{name}, which {needed_by} needs, is not in the lock")
        try:
            candidate = repo.candidate(name, pins.get(name))
            path, sha256 = repo.download(candidate)
        except NotFoundError as error:
            asked = f", which {needed_by} needs," if needed_by else ""
            raise NotFoundError(f"R package {name}{asked} cannot be found: {error}") from error
        description = read_description(path, name)
        if description["Package"] != name:
            raise RPackagesError(f"{candidate.url} holds {description['Package']}, not {name}")
        needs = description_needs(description)
        found[name] = (LockedPackage(
            name, description["Version"], candidate.url, sha256,
            [d.name for d in needs.needs], [d.name for d in needs.linking_to]), needs)
        queue.extend((d.name, name) for d in needs.needs + needs.linking_to)
    for name, (_locked, needs) in found.items():
        for dep in needs.needs + needs.linking_to:
            if not dep.allows(found[dep.name][0].version):
                raise RPackagesError(f"{name} needs {dep}; the repository has "
                                     f"{dep.name} {found[dep.name][0].version}")
    r_mins = [n.r_version_min for _package, n in found.values() if n.r_version_min]
    return Lock(repo.describe(), install_order({n: p for n, (p, _node) in found.items()}),
                max(r_mins, key=version_key) if r_mins else None)


def install_order(packages: Mapping[str, LockedPackage]) -> list[LockedPackage]:
    """Dependencies first; among packages that are ready, by name. A cycle is an error."""
    waiting = {name: set(p.needs + p.linking_to) & packages.keys()
               for name, p in packages.items()}
    order: list[LockedPackage] = []
    while waiting:
        ready = sorted((n for n, deps in waiting.items() if not deps), key=str.lower)
        if not ready:
            raise RPackagesError("the packages need each other in a cycle, R cannot install "
                                 f"them: {', '.join(cycle(waiting))}")
        for name in ready:
            order.append(packages[name])
            del waiting[name]
        for deps in waiting.values():
            deps.difference_update(ready)
    return order


def cycle(waiting: Mapping[str, set[str]]) -> list[str]:
    """One cycle among packages that all still wait: a -> b -> ... -> a."""
    path = [min(waiting)]
    while True:
        step = min(waiting[path[-1]])
        if step in path:
            return [*path[path.index(step):], step]
        path.append(step)


# --- renv.lock and verification ----------------------------------------------------------


def read_renv_lock(text: str) -> list[str]:
    """The ``name==version`` requests of an renv.lock. renv's ``Hash`` is an md5 of
    DESCRIPTION fields, not of a tarball: the sha256 comes from downloading."""
    data = json.loads(text)
    requests = []
    for key, entry in sorted(data.get("Packages", {}).items()):
        source = entry.get("Source", "Repository")
        if source not in ("Repository", "CRAN", "Bioconductor"):
            raise RPackagesError(f"renv.lock: {key} comes from {source}; only repository "
                                 f"packages can be locked here")
        if entry.get("Package", key) in BASE_PACKAGES:
            continue
        requests.append(f"{entry.get('Package', key)}=={entry['Version']}")
    return requests


def verify_tarball(package: LockedPackage, path: str) -> None:
    """Refuse a tarball whose sha256 is not the lock's."""
    have = file_digest(path)
    if have != package.sha256:
        raise ChecksumError(f"{package.name} {package.version}: {path} has sha256 {have}, "
                            f"the lock says {package.sha256}; refusing it")


def fetch_locked(lock: Lock, repo: Repository) -> list[str]:
    """Every tarball of ``lock``, downloaded (or from the cache) and verified: nothing is
    resolved. Their paths, in install order."""
    paths = []
    for package in lock.packages:
        candidate = Candidate(package.name, package.version, package.url,
                              sha256=package.sha256,
                              filename=urllib.parse.urlsplit(package.url).path.rsplit("/", 1)[-1])
        try:
            path, _sha256 = repo.download(candidate)
        except ChecksumError as error:
            raise ChecksumError(f"{package.name} {package.version}: {error}") from error
        verify_tarball(package, path)
        paths.append(path)
    return paths
