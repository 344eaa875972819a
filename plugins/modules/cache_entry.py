#!/usr/bin/python
"""Keep one entry of the machine-wide build cache, verified by its sha256.

The cache (lookup ``r_lambda.release.cache_dir``) holds what a release downloads or builds
once per machine: source tarballs, built R and Python trees, wheels. An entry is a file or
a folder named after a digest of its inputs, and ``<entry>.sha256`` beside it holds the
sha256 of its bytes (of a folder: of its SHA256SUMS-style listing), written when the entry
was stored. ``state: verified`` trusts an entry only when it still has those bytes: a
truncated, edited or half-written entry is removed (the caller then builds it again),
never used. ``state: stored`` moves a finished file or folder into place by a rename and
then writes its digest, so a reader sees a whole entry or none, whatever is interrupted.
``state: present`` is both: a verified entry is used, a missing or corrupt one is made by
the ``fill`` commands into a temporary folder of this process and then stored.

Runs side by side on one machine (two checkouts, the test suite's two streams) must not
build the same entry twice on two cores: ``state: claimed`` either returns the verified
entry, or claims it (``<entry>.claim``, created exclusively) for the caller to build, or,
while another run's claim is alive, waits for that run to store it. A claim is alive while
its holder touches it (module build_wait does, at every poll); one not touched for
``claim_ttl`` seconds, or given back (``state: unclaimed``), is no claim.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: cache_entry
short_description: Verify, store or remove one entry of the machine-wide build cache
version_added: 1.0.0
description:
  - An entry is a file or a folder; C(<path>.sha256) beside it holds the sha256 of its bytes
    (of a folder, of the sorted list of its files' sha256 and relative paths).
  - C(verified) removes an entry whose bytes no longer match, so that the caller rebuilds it.
  - C(stored) moves a finished file or folder into place by a rename, then writes its digest.
  - C(present) keeps a verified entry, else makes it with I(fill) in a temporary folder and
    stores it.
  - C(claimed) returns a verified entry, or claims the entry for the caller to make, or waits
    while another run's live claim says it is making it.
  - The cache is on the controller (lookup r_lambda.release.cache_dir); the module runs there.
author:
  - r-lambda maintainers (!UNKNOWN)
notes:
  - Check mode reports what C(verified), C(stored), C(present) and C(absent) would change
    without changing it; C(claimed) and C(unclaimed) act as they would outside check mode.
options:
  path:
    type: path
    required: true
    description: The entry in the cache.
  state:
    type: str
    choices: [verified, stored, present, claimed, unclaimed, absent]
    default: verified
    description:
      - C(verified) reports whether the entry exists with the bytes its digest names,
        removing it when it does not.
      - C(stored) moves I(src) to I(path) and records its digest.
      - C(present) is C(verified), then, when the entry is missing or was corrupt, runs
        I(fill) and stores what it made.
      - C(claimed) is C(verified), then, when the entry is missing, either claims it
        (C(claimed) true, the caller makes and stores it) or waits for the run whose claim is
        alive to store it (at most I(wait) seconds, then claims it).
      - C(unclaimed) gives a claim back (C(stored) does too).
      - C(absent) removes the entry and its digest.
  wait:
    type: int
    default: 1800
    description: With C(claimed), seconds to wait for another run's build at most.
  claim_ttl:
    type: int
    default: 120
    description: Seconds after its last touch that a claim is dead (its holder stopped).
  fill:
    type: list
    elements: list
    description:
      - With C(present), the commands (each a list of arguments, run in order on the
        controller, without a shell) that make the entry; C({part}) in an argument stands for
        the temporary folder they must fill, which becomes the entry. A command that
        downloads must check what it downloads against a hash the repository holds
        (C(pip download --require-hashes)); tests/unit/test_hash_pins.py fails otherwise.
  downloads:
    type: list
    elements: dict
    description:
      - With C(present), files fetched into the entry before the I(fill) commands run, each
        C(url), C(sha256) (the 64 hex digits the repository pins) and optionally C(name) (the
        file's name in the entry; the URL's last part by default). A file whose bytes have
        another sha256 fails the task and nothing is stored.
    suboptions:
      url:
        type: str
        required: true
        description: Where the file is downloaded from.
      sha256:
        type: str
        required: true
        description: The sha256 its bytes must have (64 hex digits, pinned in the repository).
      name:
        type: str
        description: The file's name in the entry (the URL's last part when not set).
  src:
    type: path
    description: With C(stored), the finished file or folder, on the same file system as I(path).
"""

EXAMPLES = r"""
- name: Look for the built R in the cache, verified
  r_lambda.release.cache_entry:
    path: "{{ r_runtime_source_cache_dir }}/R-4.6.1-x86_64-0123456789abcdef.tar.gz"
  register: cached

- name: Download the runtime client's wheels once per machine, verified before every use
  r_lambda.release.cache_entry:
    path: "{{ wheelhouse }}/awslambdaric-4.2.2-cp313-x86_64"
    state: present
    fill:
      - [pip, download, --require-hashes, --only-binary, ":all:", --python-version, "3.13",
         --dest, "{part}", -r, awslambdaric.lock]
- name: Download an sdist once per machine, checked against its pinned sha256
  r_lambda.release.cache_entry:
    path: "{{ wheelhouse }}/rpy2-rinterface-3.6.7"
    state: present
    downloads:
      - url: "{{ rpy2_rinterface_sdist_url }}"
        sha256: 3aee0b44b9204d96c2eb2503b2f9b03f6d9c9e525f9a2d1a2e194b3a789856c1

- name: Keep a new build in the cache
  r_lambda.release.cache_entry:
    path: "{{ r_runtime_source_cache_dir }}/R-4.6.1-x86_64-0123456789abcdef.tar.gz"
    src: "{{ r_runtime_source_cache_dir }}/R-4.6.1-x86_64-0123456789abcdef.tar.gz.part"
    state: stored
"""

RETURN = r"""
exists:
  description: The entry exists and its bytes match its recorded sha256 (after the task).
  type: bool
  returned: always
  sample: true
sha256:
  description: The entry's sha256 (empty when it does not exist).
  type: str
  returned: always
  sample: 3aee0b44b9204d96c2eb2503b2f9b03f6d9c9e525f9a2d1a2e194b3a789856c1
removed:
  description: Why a corrupt entry was removed (empty when none was).
  type: str
  returned: always
  sample: ""
filled:
  description: With C(present), whether the fill commands made the entry in this run.
  type: bool
  returned: always
  sample: false
claimed:
  description: With C(claimed), whether this run now holds the claim and must make the entry.
  type: bool
  returned: when state is claimed
  sample: true
waited:
  description: With C(claimed), seconds spent waiting for another run's build.
  type: float
  returned: when state is claimed
  sample: 0.0
claim:
  description: The claim file (C(<path>.claim)), for build_wait to keep alive.
  type: str
  returned: when state is claimed
  sample: /root/.cache/r-lambda/r-source/R-4.5.0-x86_64-0123456789abcdef.tar.gz.claim
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_SECONDS = 120
POLL_SECONDS = 3


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def entry_sha256(path: Path) -> str:
    """The sha256 of a file, or of a folder's sorted ``<sha256>  <relative path>`` lines."""
    if path.is_file():
        return file_sha256(path)
    lines = [f"{file_sha256(p)}  {p.relative_to(path).as_posix()}\n"
             for p in sorted(path.rglob("*")) if p.is_file()]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def recorded_sha256(path: Path) -> str:
    try:
        return sidecar(path).read_text().split()[0]
    except (OSError, IndexError):
        return ""


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    sidecar(path).unlink(missing_ok=True)


def check(path: Path) -> tuple[str, str]:
    """(sha256, why it is corrupt): ("", "") for a missing entry."""
    if not path.exists():
        return "", ""
    want = recorded_sha256(path)
    if not want:
        return "", f"{path} has no recorded sha256 ({sidecar(path).name}): it was never completed"
    have = entry_sha256(path)
    if have != want:
        return "", f"{path} has sha256 {have}, not the {want} recorded when it was stored"
    return have, ""


def write_sidecar(path: Path, sha256: str) -> None:
    fd, part = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{sha256}  {path.name}\n")
    os.chmod(part, 0o644)
    os.replace(part, sidecar(path))


def store(src: Path, path: Path) -> str:
    """Move src into place (replacing an older entry), then record its digest."""
    sha256 = entry_sha256(src)
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar(path).unlink(missing_ok=True)  # no moment where an old digest names new bytes
    if src.is_dir():
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            src.rename(path)
            shutil.rmtree(old)
        else:
            src.rename(path)
    else:
        os.replace(src, path)
    write_sidecar(path, sha256)
    claim_file(path).unlink(missing_ok=True)
    return sha256


def claim_file(path: Path) -> Path:
    return path.with_name(path.name + ".claim")


def claim_alive(path: Path, ttl: int) -> bool:
    try:
        return time.time() - claim_file(path).stat().st_mtime < ttl
    except FileNotFoundError:
        return False


def take_claim(path: Path, ttl: int) -> bool:
    """Create the claim exclusively (a dead one is removed first); True when this run holds it."""
    claim = claim_file(path)
    if claim.exists() and not claim_alive(path, ttl):
        claim.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{os.uname().nodename} {os.getpid()} {time.time():.0f}\n")
    return True


def claimed(path: Path, wait: int, ttl: int) -> dict:
    """The verified entry, or this run's claim on it, or another run's entry once stored."""
    start = time.monotonic()
    while True:
        sha256, corrupt = check(path)
        if sha256:
            return {"exists": True, "sha256": sha256, "claimed": False, "removed": corrupt}
        if corrupt:
            remove(path)
        if take_claim(path, ttl):
            return {"exists": False, "sha256": "", "claimed": True, "removed": corrupt}
        if time.monotonic() - start > wait:  # gave up waiting: the claim is taken over
            claim_file(path).unlink(missing_ok=True)
            take_claim(path, ttl)
            return {"exists": False, "sha256": "", "claimed": True, "removed": corrupt}
        time.sleep(POLL_SECONDS)


def download(url: str, sha256: str, dest: Path) -> None:
    """Fetch url into dest, refusing bytes whose sha256 is not the pinned one."""
    digest = hashlib.sha256()
    try:
        response = open_url(url, timeout=DOWNLOAD_TIMEOUT_SECONDS)
        with dest.open("wb") as handle:
            for block in iter(lambda: response.read(CHUNK), b""):
                digest.update(block)
                handle.write(block)
    except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
        raise FillFailed(f"downloading {url} failed: {error}") from error
    if digest.hexdigest() != sha256.lower():
        dest.unlink(missing_ok=True)
        raise FillFailed(f"{url} has sha256 {digest.hexdigest()}, not the pinned {sha256}: "
                         "refused (the file changed upstream, or the pin is wrong)")


def fill(path: Path, commands: list[list[str]], downloads: list[dict] | None = None) -> str:
    """Make the entry (downloads, then commands) in a folder of this process's; store it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(prefix=f".{path.name}.part-", dir=path.parent))
    try:
        for item in downloads or []:
            name = item.get("name") or item["url"].rstrip("/").rsplit("/", 1)[-1].split("?")[0]
            download(item["url"], item["sha256"], part / name)
        for command in commands:
            argv = [str(arg).replace("{part}", str(part)) for arg in command]
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  check=False)
            if done.returncode != 0:
                output = (done.stderr or done.stdout).strip()[-2000:]
                raise FillFailed(f"making {path} failed: {' '.join(argv)} exited with "
                                 f"{done.returncode}: {output}")
        return store(part, path)
    finally:
        if part.exists():
            shutil.rmtree(part)


class FillFailed(Exception):
    pass


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "default": "verified",
                      "choices": ["verified", "stored", "present", "claimed", "unclaimed",
                                  "absent"]},
            "wait": {"type": "int", "default": 1800},
            "claim_ttl": {"type": "int", "default": 120},
            "src": {"type": "path"},
            "fill": {"type": "list", "elements": "list"},
            "downloads": {"type": "list", "elements": "dict",
                          "options": {"url": {"type": "str", "required": True},
                                      "sha256": {"type": "str", "required": True},
                                      "name": {"type": "str"}}},
        },
        required_if=[("state", "stored", ["src"]),
                     ("state", "present", ["fill", "downloads"], True)],
        supports_check_mode=True,
    )
    path = Path(module.params["path"])
    state = module.params["state"]
    try:
        if state == "stored":
            src = Path(module.params["src"])
            if not src.exists():
                module.fail_json(msg=f"src={str(src)!r} does not exist: nothing to store as {path}")
            if module.check_mode:
                module.exit_json(changed=True, exists=True, sha256="", removed="", filled=False)
            sha256 = store(src, path)
            module.exit_json(changed=True, exists=True, sha256=sha256, removed="", filled=False)
        if state == "claimed":
            start = time.monotonic()
            found = claimed(path, module.params["wait"], module.params["claim_ttl"])
            module.exit_json(changed=found["claimed"], filled=False, claim=str(claim_file(path)),
                             waited=round(time.monotonic() - start, 1), **found)
        if state == "unclaimed":
            held = claim_file(path).exists()
            claim_file(path).unlink(missing_ok=True)
            module.exit_json(changed=held, exists=False, sha256="", removed="", filled=False)
        if state == "absent":
            changed = path.exists() or sidecar(path).exists()
            if changed and not module.check_mode:
                remove(path)
            module.exit_json(changed=changed, exists=False, sha256="", removed="", filled=False)
        sha256, corrupt = check(path)
        if corrupt:
            module.warn(f"Cache entry removed, it will be built again: {corrupt}")
            if not module.check_mode:
                remove(path)
        elif not sha256 and sidecar(path).exists() and not module.check_mode:
            sidecar(path).unlink()  # a digest left without its entry
        if state == "present" and not sha256 and not module.check_mode:
            made = fill(path, module.params["fill"] or [], module.params["downloads"])
            module.exit_json(changed=True, exists=True, sha256=made, removed=corrupt, filled=True)
        module.exit_json(changed=bool(corrupt) or (state == "present" and not sha256),
                         exists=bool(sha256), sha256=sha256, removed=corrupt, filled=False)
    except FillFailed as error:
        module.fail_json(msg=str(error))
    except OSError as error:
        module.fail_json(msg=f"cache entry {str(path)!r}: {error}")


if __name__ == "__main__":
    main()
