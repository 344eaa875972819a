"""The machine-wide cache folder of this project, shared by every checkout on the machine.

``lookup('r_lambda.release.cache_dir', 'r-source')`` is ``$R_LAMBDA_CACHE_DIR/r-source``
when that variable is set, else ``$XDG_CACHE_HOME/r-lambda/r-source``, else
``~/.cache/r-lambda/r-source``. The roles default their download and build caches to it,
scripts/bootstrap.sh keeps the virtualenvs there by the same rule, and every entry in it
is named after a digest of its inputs (module r_lambda.release.cache_entry verifies it).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: cache_dir
short_description: The project's machine-wide cache folder, or a folder inside it
description:
  - C($R_LAMBDA_CACHE_DIR) when set, else C($XDG_CACHE_HOME/r-lambda), else C(~/.cache/r-lambda),
    on the controller; each term is a relative folder inside it.
options:
  _terms:
    description: Relative folders inside the cache (none gives the cache folder itself).
    required: false
"""

EXAMPLES = r"""
- name: Where the built R trees are kept
  ansible.builtin.debug:
    msg: "{{ lookup('r_lambda.release.cache_dir', 'r-source') }}"
"""

RETURN = r"""
_raw:
  description: Absolute folders, one per term.
  type: list
  elements: str
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase


def cache_root(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if env.get("R_LAMBDA_CACHE_DIR"):
        return os.path.abspath(os.path.expanduser(env["R_LAMBDA_CACHE_DIR"]))
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(xdg), "r-lambda")


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        root = cache_root()
        if not terms:
            return [root]
        for term in terms:
            if not isinstance(term, str) or term.startswith("/") or ".." in term.split("/"):
                raise AnsibleLookupError(
                    f"cache_dir takes folders relative to the cache ({root}), got {term!r}")
        return [os.path.join(root, term) for term in terms]
