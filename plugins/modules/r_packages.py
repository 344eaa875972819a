#!/usr/bin/python
"""The R packages a model needs, resolved (or read from a lock) and fetched on the
controller, each tarball checked against its sha256 (issue #24, the release side).

Names (``name`` or ``name==version``) are resolved with module_utils.r_packages against
one repository; with ``lock`` nothing is resolved: the project's lock is fetched as it
is, and an ``renv.lock`` gives the exact versions to find. Every tarball is downloaded
once into the machine-wide cache and refused when its sha256 is not the lock's (or the
Debian index's): the failure names the package, the sha256 expected and the one found.
Nothing is changed anywhere but in the cache, so check mode runs it too.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: r_packages
short_description: Resolve or read the lock of a model's R packages and fetch their tarballs
version_added: 1.0.0
author:
  - r-lambda maintainers (!UNKNOWN)
description:
  - Resolves I(packages) (with Depends, Imports and LinkingTo) against I(repository), or
    reads I(lock) (the project's lock, or an renv.lock resolved for its exact versions).
  - Downloads every tarball into I(cache_dir) once, checked against its sha256; a tarball
    whose sha256 is not the lock's (or the Debian index's) fails the module, naming the
    package, the sha256 expected and the one found.
  - Changes nothing but the cache, so it runs in check mode too.
options:
  packages:
    type: list
    elements: str
    default: []
    description: R package names, optionally C(name==version). Ignored with I(lock).
  lock:
    type: path
    description: A lock (docs/r-packages.md) or an renv.lock; nothing is resolved with it.
  repository:
    type: dict
    default: {}
    description:
      - C(kind) (C(debian) or C(cran)), C(url) (the mirror or CRAN-like URL), C(suite)
        (Debian's), C(fallback_suites) (Debian suites whose tarball is taken when the mirror
        does not serve the suite's). A lock of the project's format names its own repository.
  cache_dir:
    type: path
    description: Where tarballs are kept (default <machine-wide cache>/r-packages).
  keyring:
    type: path
    default: /usr/share/keyrings/debian-archive-keyring.gpg
    description: Keyring gpgv checks Debian's InRelease with.
"""

EXAMPLES = r"""
- name: Resolve randomForest against Debian trixie and fetch its tarballs
  r_lambda.release.r_packages:
    packages: [randomForest]
    repository: {kind: debian}
  delegate_to: localhost
"""

RETURN = r"""
lock:
  description: The lock (lock_version, r_version_min, repository, packages in install order).
  type: dict
  returned: success
  sample:
    lock_version: 1
    r_version_min: "4.1"
    repository: {kind: debian, suite: trixie}
    packages: [{name: randomForest, version: 4.7-1.2, sha256: aad33227...a04b11}]
tarballs:
  description: Each package with its tarball in the cache (name, version, url, sha256, path, bytes).
  type: list
  elements: dict
  returned: success
  sample:
    - name: randomForest
      version: 4.7-1.2
      url: http://deb.debian.org/debian/pool/main/r/r-cran-randomforest/r-cran-randomforest_4.7-1.2.orig.tar.gz
      sha256: aad33227...a04b11
      path: /root/.cache/r-lambda/r-packages/randomForest_4.7-1.2.tar.gz
      bytes: 81974
source:
  description: C(names), C(lock) or C(renv.lock).
  type: str
  returned: success
  sample: names
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.r_lambda.release.plugins.module_utils import r_packages as rp


def load_lock(path: str, repository: dict, cache_dir: str | None, keyring: str | None
              ) -> tuple[rp.Lock, rp.Repository, str]:
    """The lock at path, with its repository: the project's as it is, an renv.lock resolved
    for its exact versions against ``repository``."""
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    try:
        data = json.loads(text)
    except ValueError as error:
        raise rp.RPackagesError(f"{path} is not JSON: {error}") from error
    if isinstance(data, dict) and "lock_version" in data:
        lock = rp.Lock.from_json(text)
        named = lock.repository
        repo = rp.repository(named["kind"], named.get("url"), named.get("suite"), cache_dir,
                             keyring)
        return lock, repo, "lock"
    if isinstance(data, dict) and "Packages" in data:
        repo = make_repository(repository, cache_dir, keyring)
        return rp.resolve(repo, rp.read_renv_lock(text), closed=True), repo, "renv.lock"
    raise rp.RPackagesError(f"{path} is neither an R package lock (lock_version) nor an "
                            f"renv.lock (Packages)")


def make_repository(repository: dict, cache_dir: str | None, keyring: str | None
                    ) -> rp.Repository:
    return rp.repository(repository.get("kind") or "debian", repository.get("url") or None,
                         repository.get("suite") or None, cache_dir, keyring,
                         repository.get("fallback_suites") or ())


def run(params: dict) -> dict:
    cache_dir, keyring = params["cache_dir"], params["keyring"]
    if params["lock"]:
        lock, repo, source = load_lock(params["lock"], params["repository"], cache_dir, keyring)
    else:
        repo = make_repository(params["repository"], cache_dir, keyring)
        lock = rp.resolve(repo, params["packages"])
        source = "names"
    paths = rp.fetch_locked(lock, repo)
    tarballs = [dict(vars(package), path=path, bytes=os.path.getsize(path))
                for package, path in zip(lock.packages, paths)]
    return {"changed": False, "lock": json.loads(lock.to_json()), "tarballs": tarballs,
            "source": source}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "packages": {"type": "list", "elements": "str", "default": []},
            "lock": {"type": "path"},
            "repository": {"type": "dict", "default": {}},
            "cache_dir": {"type": "path"},
            "keyring": {"type": "path", "default": rp.DEFAULT_KEYRING},
        },
        supports_check_mode=True,
    )
    try:
        module.exit_json(**run(module.params))
    except rp.RPackagesError as error:
        module.fail_json(msg=str(error))
    except OSError as error:
        module.fail_json(msg=f"R packages: {error}")


if __name__ == "__main__":
    main()
