#!/usr/bin/python
"""S3 writes that stay correct when releases overlap or die (artifact_store's own module).

Every write here is conditional, so that two runs can never both believe they wrote a key:

- The bucket lock is one object, ``<prefix>/.lock.json``. A run takes it with a put
  ``If-None-Match: *`` (nobody held it) or ``If-Match: <etag>`` of a lock that was
  released or has expired (the release role finds runs of its own controller that died
  and releases their locks first).
  It is given back by writing ``state: released`` over it with ``If-Match``, so only the
  conditional put is needed (S3 general purpose buckets, SeaweedFS and moto all have it).
- Every object a run publishes is first named in the lock (``intents``), written through
  the lock (a run that lost its lock writes nothing), and put ``If-None-Match: *`` with
  the run id and sha256 in its metadata. A key that exists already is reused only when
  it holds the same sha256; an immutable key is never overwritten.
- A rollback removes only keys whose metadata names the run, never a layer another
  manifest names; an expired run's intents are rolled back by the run that takes its lock.
- ``latest.json`` moves with ``If-Match`` on the ETag that was read, and never to a
  release created before the one it names.
- A log next to a release (``append``: a deploy's record in ``deploys.jsonl``) grows by
  a put ``If-Match`` on the ETag read (``If-None-Match: *`` for the first line), read and
  tried again when another writer came first: no line is lost, none needs the lock.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: artifact_store_s3
short_description: Conditional S3 writes for releases (bucket lock, immutable keys, latest.json)
version_added: 1.0.0
description:
  - The writes of the C(artifact_store) role, each one conditional, so that two runs can never
    both believe they wrote a key, whether releases overlap, are interrupted or die.
  - "C(lock) takes the bucket lock, the object C(<prefix>/.lock.json), with a put
    C(If-None-Match: *) (nobody held it) or C(If-Match) on the ETag of a lock that was given
    back or has expired; what the run of an expired lock wrote is rolled back first.
    C(release) gives it back (C(state: released)), after removing what the run wrote when
    I(rollback) is true."
  - "C(put) writes one object through the lock (the key is first recorded in the lock's
    C(intents)), with C(If-None-Match: *) and the run id and sha256 in its metadata. A key that
    exists already is reused only when it holds the same sha256, unless I(create_only) is
    false (then it is replaced over the ETag just read)."
  - C(put_files) puts several files the same way, each under I(key)/its name, and reads each
    one it created back from S3 to check its sha256.
  - C(get) reads one object. C(append) adds one JSON line to an object (a deploy's record in
    C(deploys.jsonl)) with C(If-Match) on the ETag read, trying again when another writer came
    first; it needs no lock.
  - C(move_latest) points C(<prefix>/latest.json) at a release with C(If-Match), never at a
    release created before the one it names.
  - C(gc) lists (and with I(apply) removes) the layers no kept release uses. C(check) reports
    what is wrong with a release in the store (its manifest verified, every object it names
    with the sha256 it records).
  - C(read) is what a release reads before it decides, in one pass; whether the bucket
    exists, C(<prefix>/latest.json), the manifest it names (empty when missing or
    unreadable), what C(check) finds wrong with that release, and the manifest of
    I(version) when one is given.
author:
  - r-lambda maintainers (!UNKNOWN)
notes:
  - The store needs S3's conditional puts (C(If-None-Match), C(If-Match)), which S3 general
    purpose buckets, SeaweedFS and moto have.
  - No check mode, every action either reads or makes a conditional write.
options:
  action:
    description: What to do; see the description for each action.
    type: str
    required: true
    choices: [lock, release, put, put_files, get, move_latest, gc, append, check, read]
  bucket:
    description: The release bucket.
    type: str
    required: true
  prefix:
    description: Key prefix of the releases; the lock and C(latest.json) live under it.
    type: str
    default: releases
  run_id:
    description:
      - The run that holds (C(lock)) or held (C(release)) the bucket lock, and through whose lock
        C(put), C(put_files), C(move_latest) and C(gc) write.
      - Required by C(lock), C(release), C(put), C(put_files), C(move_latest) and C(gc).
    type: str
  version:
    description:
      - With C(lock), the release version the run publishes (recorded in the lock).
      - With C(check), the release to check (required).
    type: str
    default: ""
  owner:
    description: With C(lock), who runs the release (user, host, process), recorded in the lock.
    type: dict
    default: {}
  key:
    description:
      - The object key (C(put), C(get), C(append)), or the folder C(put_files) puts its files
        under; required by each.
    type: str
  src:
    description: With C(put), the local file to upload.
    type: path
  content:
    description: With C(put), the text to upload (instead of I(src)).
    type: str
  files:
    description:
      - With C(put_files), the files to upload, each a name (put under I(key)/name) and the
        local file (required by C(put_files)). A missing file stops the action before any put.
    type: dict
  create_only:
    description:
      - With C(put), put only when the key does not exist, or holds the same sha256 (immutable
        keys); false replaces the object over the ETag just read (the manifest, result files).
    type: bool
    default: true
  ttl_minutes:
    description: With C(lock), the minutes the lock lasts without a write (every write renews it).
    type: int
    default: 60
  rollback:
    description:
      - With C(release), first remove what the run wrote (never what a promoted release uses).
    type: bool
    default: false
  pointer:
    description: With C(move_latest), the body of C(latest.json) (required), with its C(created_at).
    type: dict
  line:
    description: With C(append), the JSON object appended as one line to I(key) (required).
    type: dict
  keep:
    description: With C(gc), keep the layers of this many newest verified releases.
    type: int
    default: 5
  apply:
    description: With C(gc), remove the unused layers; false only lists them.
    type: bool
    default: false
  encryption:
    description: The server-side encryption of every put (C(AES256), C(aws:kms)), or C(none).
    type: str
    default: AES256
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Take the bucket's release lock
  r_lambda.release.artifact_store_s3:
    action: lock
    bucket: r-lambda-releases
    run_id: "{{ release_run_id }}"
    version: "{{ release_version }}"
    owner: {user: "{{ ansible_user_id }}", host: "{{ inventory_hostname }}"}
  register: lock
  delegate_to: localhost

- name: Upload the package under its immutable key
  r_lambda.release.artifact_store_s3:
    action: put
    bucket: r-lambda-releases
    run_id: "{{ release_run_id }}"
    key: "releases/{{ release_version }}/package.zip"
    src: "{{ dist_dir }}/package.zip"
  delegate_to: localhost

- name: Upload the release's files, each read back and checked
  r_lambda.release.artifact_store_s3:
    action: put_files
    bucket: r-lambda-releases
    run_id: "{{ release_run_id }}"
    key: "releases/{{ release_version }}"
    files:
      package.zip: "{{ dist_dir }}/package.zip"
      model.rds: "{{ dist_dir }}/model.rds"
  register: published
  delegate_to: localhost

- name: Point latest.json at the verified release
  r_lambda.release.artifact_store_s3:
    action: move_latest
    bucket: r-lambda-releases
    run_id: "{{ release_run_id }}"
    pointer:
      version: "{{ release_version }}"
      manifest: "s3://r-lambda-releases/releases/{{ release_version }}/manifest.json"
      created_at: "{{ release_created_at }}"
  delegate_to: localhost

- name: Read latest.json
  r_lambda.release.artifact_store_s3:
    action: get
    bucket: r-lambda-releases
    key: releases/latest.json
  register: latest
  delegate_to: localhost

- name: Record a deploy next to its release
  r_lambda.release.artifact_store_s3:
    action: append
    bucket: r-lambda-releases
    key: "releases/{{ release_version }}/deploys.jsonl"
    line: {alias: live, deployed_at: "{{ now(utc=true).isoformat() }}"}
  delegate_to: localhost

- name: Give the lock back, rolling back what the run wrote
  r_lambda.release.artifact_store_s3:
    action: release
    bucket: r-lambda-releases
    run_id: "{{ release_run_id }}"
    rollback: true
  delegate_to: localhost
"""

RETURN = r"""
acquired:
  description: With C(lock), whether this run holds the lock now.
  returned: when action is lock
  type: bool
  sample: true
holder:
  description: With C(lock), the lock as it is now (this run's, or the run that holds it).
  returned: when action is lock
  type: dict
  sample:
    state: held
    run_id: 20260101T120000Z-1a2b3c
    version: 1.4.0
    owner: {user: ci, host: build-1}
    acquired_at: "2026-01-01T12:00:00Z"
    expires_at: "2026-01-01T13:00:00Z"
    ttl_minutes: 60
    intents: []
taken_from:
  description: With C(lock), the expired lock this run took over (null when none was).
  returned: when action is lock
  type: dict
  sample: null
rolled_back:
  description:
    - With C(lock), what the run of an expired lock had written and was removed; with
      C(release), what this run wrote and was removed (when I(rollback)).
    - C(deleted) lists the keys removed, C(kept) the keys left and why.
  returned: when action is lock or release
  type: dict
  sample:
    deleted: [releases/1.4.0/package.zip]
    kept: ["layers/abc/layer.zip (release 1.3.0 uses it)"]
held:
  description: With C(release), whether this run held the lock (nothing is done when it did not).
  returned: when action is release
  type: bool
  sample: true
created:
  description: With C(put), whether the object was written (false when the same bytes were there).
  returned: when action is put
  type: bool
  sample: true
sha256:
  description: With C(put), the sha256 of the bytes put.
  returned: when action is put
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
etag:
  description: With C(put) and C(get), the object's ETag (null when C(get) finds no object).
  returned: when action is put or get
  type: str
  sample: '"5d41402abc4b2a76b9719d911017c592"'
published:
  description: With C(put_files), the sha256 of every file, by key (uploaded or already there).
  returned: when action is put_files
  type: dict
  sample:
    releases/1.4.0/package.zip: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
uploaded:
  description: With C(put_files), the keys this run created (not those found with the same bytes).
  returned: when action is put_files
  type: list
  elements: str
  sample: [releases/1.4.0/package.zip]
exists:
  description: With C(get), whether the object exists.
  returned: when action is get
  type: bool
  sample: true
content:
  description: With C(get), the object's text (empty when it does not exist).
  returned: when action is get
  type: str
  sample: '{"version": "1.4.0"}'
metadata:
  description: With C(get), the object's user metadata (C(sha256), C(run-id)).
  returned: when action is get
  type: dict
  sample:
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    run-id: 20260101T120000Z-1a2b3c
moved:
  description: With C(move_latest), whether C(latest.json) names the pointer's release now.
  returned: when action is move_latest
  type: bool
  sample: true
latest:
  description: With C(move_latest), C(latest.json) as it is now (naming a newer release, maybe);
    with C(read), C(latest.json) (empty when there is none).
  returned: when action is move_latest or read
  type: dict
  sample: {version: 1.4.0, created_at: "2026-01-01T12:00:00Z"}
kept:
  description: With C(gc), the layers kept, each with the releases that use it.
  returned: when action is gc
  type: dict
  sample: {abc123: [1.3.0, 1.4.0]}
unused:
  description: With C(gc), the layers no kept release uses.
  returned: when action is gc
  type: list
  elements: str
  sample: [def456]
keys:
  description: With C(gc), the keys of the unused layers (removed when I(apply)).
  returned: when action is gc
  type: list
  elements: str
  sample: [layers/def456/layer.zip]
key:
  description: With C(append), the object the line was added to.
  returned: when action is append
  type: str
  sample: releases/1.4.0/deploys.jsonl
lines:
  description: With C(append), how many lines the object holds now.
  returned: when action is append
  type: int
  sample: 3
problems:
  description: With C(check), what is wrong with the release in the store (empty when nothing is);
    with C(read), with the release latest.json names.
  returned: when action is check or read
  type: list
  elements: str
  sample: ["its manifest is candidate, not verified"]
bucket_found:
  description: With C(read), whether the bucket exists (among those the credentials list).
  returned: when action is read
  type: bool
  sample: true
latest_manifest:
  description: With C(read), the manifest latest.json names (empty when missing or unreadable).
  returned: when action is read
  type: dict
  sample: {status: verified}
version_manifest:
  description: With C(read), the manifest of I(version) (empty when none was given or exists).
  returned: when action is read
  type: dict
  sample: {status: candidate}
"""

import contextlib
import hashlib
import json
import os
import random
import re
import time
from datetime import datetime, timedelta, timezone

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

try:
    from botocore.config import Config
    from botocore.exceptions import ClientError, ParamValidationError
except ImportError:  # AnsibleAWSModule reports a missing boto3/botocore
    Config = None

    class ClientError(Exception):
        """Stands in for botocore's (never raised without botocore)."""

    class ParamValidationError(Exception):
        """Stands in for botocore's (never raised without botocore)."""


LOCK_NAME = ".lock.json"
USER_AGENT = "r-lambda-artifact_store_s3/1"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# A release version as artifact_store accepts it (roles/artifact_store: the S3 key part).
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Refused(Exception):
    """A write the store must not make; the message says why."""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _precondition_failed(error: ClientError) -> bool:
    return _code(error) in ("PreconditionFailed", "412", "ConditionalRequestConflict")


def _missing(error: ClientError) -> bool:
    return _code(error) in ("NoSuchKey", "NoSuchBucket", "404", "NotFound")


# --------------------------------------------------------------------------- store


class Store:
    """One bucket's releases, written only through conditional puts."""

    def __init__(self, client, bucket: str, prefix: str = "releases", encryption: str = "AES256"):
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")
        self.encryption = encryption
        self.lock_key = f"{self.prefix}/{LOCK_NAME}"

    # ----------------------------------------------------------------- raw objects

    def read(self, key: str) -> tuple[bytes | None, str | None, dict]:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _missing(error):
                return None, None, {}
            raise
        return answer["Body"].read(), answer["ETag"], answer.get("Metadata", {})

    def head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _missing(error) or _code(error) == "403":
                return None
            raise

    def write(self, key: str, body: bytes, *, if_match: str | None = None, metadata=None) -> str:
        """Put body under key: only when absent, or only over the ETag if_match."""
        args = {"Bucket": self.bucket, "Key": key, "Body": body, "Metadata": metadata or {}}
        if self.encryption != "none":
            args["ServerSideEncryption"] = self.encryption
        if if_match:
            args["IfMatch"] = if_match
        else:
            args["IfNoneMatch"] = "*"
        return self.client.put_object(**args)["ETag"]

    def append(self, key: str, line: dict, attempts: int = 20) -> dict:
        """Add one JSON line to the object ``key`` (created by the first line)."""
        text = json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n"
        for attempt in range(attempts):
            body, etag, metadata = self.read(key)
            try:
                self.write(key, (body or b"") + text.encode(), if_match=etag, metadata=metadata)
            except ClientError as error:
                if _precondition_failed(error):
                    # Another writer came first: read its line, then add ours, after a
                    # short pause that grows (and differs between writers).
                    time.sleep(random.uniform(0.02, 0.1) * (attempt + 1))
                    continue
                raise
            return {"changed": True, "key": key, "lines": (body or b"").count(b"\n") + 1}
        raise Refused(f"s3://{self.bucket}/{key} kept changing: {attempts} appends failed")

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    # ------------------------------------------------------------------------ lock

    def _lock(self) -> tuple[dict, str | None]:
        body, etag, _metadata = self.read(self.lock_key)
        return (json.loads(body) if body else {}), etag

    @staticmethod
    def _held_by(lock: dict, run_id: str) -> bool:
        return lock.get("state") == "held" and lock.get("run_id") == run_id

    def lock(self, run_id: str, version: str, ttl_minutes: int, owner: dict) -> dict:
        """Take the bucket lock for run_id. Returns acquired and holder; when the lock is
        taken from a run whose lock expired, that run's writes are rolled back first
        (taken_from, rolled_back)."""
        now = _now()
        mine = {
            "state": "held",
            "run_id": run_id,
            "version": version,
            "owner": owner,
            "acquired_at": now.strftime(TIME_FORMAT),
            "expires_at": (now + timedelta(minutes=ttl_minutes)).strftime(TIME_FORMAT),
            "ttl_minutes": ttl_minutes,
            "intents": [],
        }
        for _attempt in range(5):
            current, etag = self._lock()
            if self._held_by(current, run_id):
                return {"acquired": True, "holder": current, "taken_from": None, "rolled_back": {}}
            held = current.get("state") == "held"
            if held and current.get("expires_at", "") >= now.strftime(TIME_FORMAT):
                return {"acquired": False, "holder": current, "taken_from": None, "rolled_back": {}}
            try:
                self.write(self.lock_key, _json(mine), if_match=etag)
            except ClientError as error:
                if _precondition_failed(error) or _missing(error):
                    continue  # another run moved first: look again
                raise
            rolled_back = {}
            if held:  # an expired lock: what its run wrote is not a release
                rolled_back = self.rollback(
                    current["run_id"], current.get("intents", []), current.get("version", "")
                )
            return {
                "acquired": True,
                "holder": mine,
                "taken_from": current if held else None,
                "rolled_back": rolled_back,
            }
        current, _etag = self._lock()
        return {"acquired": False, "holder": current, "taken_from": None, "rolled_back": {}}

    def _update_lock(self, run_id: str, change) -> dict:
        """Apply change to the lock run_id holds, renewing it; Refused when it does not."""
        for _attempt in range(5):
            current, etag = self._lock()
            if not self._held_by(current, run_id):
                raise Refused(
                    f"run {run_id} no longer holds the lock of s3://{self.bucket}/{self.prefix}"
                    f" (it is {current.get('state', 'absent')}"
                    + (f", held by run {current['run_id']}" if current.get("run_id") else "")
                    + "): nothing more is written"
                )
            change(current)
            current["expires_at"] = (
                _now() + timedelta(minutes=int(current.get("ttl_minutes", 60)))
            ).strftime(TIME_FORMAT)
            try:
                self.write(self.lock_key, _json(current), if_match=etag)
                return current
            except ClientError as error:
                if not _precondition_failed(error):
                    raise
        raise Refused(
            f"the lock of s3://{self.bucket}/{self.prefix} kept changing under run {run_id}"
        )

    def release(self, run_id: str, rollback: bool) -> dict:
        """Give run_id's lock back (state released), after removing what the run wrote
        when rollback is true. Nothing happens when run_id does not hold the lock."""
        current, _etag = self._lock()
        if not self._held_by(current, run_id):
            return {"changed": False, "held": False, "rolled_back": {}}
        rolled_back = (
            self.rollback(run_id, current.get("intents", []), current.get("version", ""))
            if rollback
            else {}
        )
        stamp = _now().strftime(TIME_FORMAT)
        self._update_lock(run_id, lambda lock: lock.update(state="released", released_at=stamp))
        return {"changed": True, "held": True, "rolled_back": rolled_back}

    # ------------------------------------------------------------------ publishing

    def put(self, run_id: str, key: str, body: bytes, *, create_only: bool = True) -> dict:
        """Put body under key through run_id's lock. An existing key is reused when it holds
        the same sha256 (create_only) or replaced over the ETag just read (not create_only)."""
        digest = hashlib.sha256(body).hexdigest()
        self._update_lock(
            run_id, lambda lock: key in lock["intents"] or lock["intents"].append(key)
        )
        metadata = {"sha256": digest, "run-id": run_id}
        if not create_only:
            held, etag, _metadata = self.read(key)
            if held is not None and hashlib.sha256(held).hexdigest() == digest:
                return {"changed": False, "created": False, "sha256": digest, "etag": etag}
            etag = self.write(key, body, if_match=etag, metadata=metadata)  # or create
            return {"changed": True, "created": held is None, "sha256": digest, "etag": etag}
        try:
            etag = self.write(key, body, metadata=metadata)
            return {"changed": True, "created": True, "sha256": digest, "etag": etag}
        except ClientError as error:
            if not _precondition_failed(error):
                raise
        held = self.head(key) or {}
        theirs = held.get("Metadata", {}).get("sha256", "")
        if theirs != digest:
            raise Refused(
                f"s3://{self.bucket}/{key} exists with sha256 {theirs or 'unknown'}, this run has "
                f"{digest}: releases are immutable, publish under a new version"
            )
        return {"changed": False, "created": False, "sha256": digest, "etag": held.get("ETag")}

    def put_files(self, run_id: str, folder: str, files: dict[str, str]) -> dict:
        """Put each local file (name -> path) under folder/name as put() does, then read each
        one this run created back from S3 and compare its sha256: S3 holds what was built."""
        missing = sorted(path for path in files.values() if not os.path.isfile(path))
        if missing:
            raise Refused(f"artifact_store_files: {', '.join(missing)} does not exist")
        published, uploaded = {}, []
        for name, path in files.items():
            key = f"{folder}/{name}"
            with open(path, "rb") as handle:
                put = self.put(run_id, key, handle.read())
            published[key] = put["sha256"]
            if put["created"]:
                uploaded.append(key)
                stored = self.read(key)[0]
                echo = hashlib.sha256(stored or b"").hexdigest()
                if echo != put["sha256"]:
                    raise Refused(f"s3://{self.bucket}/{key} came back from S3 with sha256 "
                                  f"{echo}, expected {put['sha256']}")
        return {"changed": bool(uploaded), "published": published, "uploaded": uploaded}

    def manifests(self) -> dict[str, dict]:
        """Version -> its manifest, for every release under the prefix."""
        found = {}
        for key in self.keys(f"{self.prefix}/"):
            match = re.fullmatch(re.escape(self.prefix) + r"/([^/]+)/manifest\.json", key)
            if match:
                found[match.group(1)] = json.loads(self.read(key)[0] or b"{}")
        return found

    def gc(self, run_id: str, keep: int, apply: bool) -> dict:
        """Layers no release among the newest keep verified ones (nor any candidate, nor
        latest.json's, nor any release ever deployed: it has a deploys.jsonl, and a live
        alias may point at it) uses; removed when apply. Needs run_id to hold the lock."""
        self._update_lock(run_id, lambda lock: None)
        manifests = self.manifests()
        deployed = {
            key.split("/")[-2]
            for key in self.keys(f"{self.prefix}/")
            if key.endswith("/deploys.jsonl") and key.count("/") == self.prefix.count("/") + 2
        }
        verified = sorted(
            (m.get("created_at", ""), v)
            for v, m in manifests.items()
            if m.get("status") == "verified"
        )
        latest = json.loads(self.read(f"{self.prefix}/latest.json")[0] or b"{}").get("version")
        kept_versions = {v for _created, v in verified[-keep:]} if keep > 0 else set()
        kept_versions |= {v for v, m in manifests.items() if m.get("status") != "verified"}
        kept_versions |= {latest} if latest else set()
        kept_versions |= deployed
        kept = _layers_of({v: m for v, m in manifests.items() if v in kept_versions})
        layer_keys = [key for key in self.keys("layers/") if key.count("/") >= 2]
        unused = sorted({key.split("/")[1] for key in layer_keys} - set(kept))
        removed = [key for key in layer_keys if key.split("/")[1] in unused]
        if apply:
            for key in removed:
                self.client.delete_object(Bucket=self.bucket, Key=key)
        return {"changed": bool(apply and removed), "kept": kept, "unused": unused, "keys": removed}

    def promoted(self, version: str) -> str:
        """Why version's objects must stay whatever happened to the run that wrote them:
        its manifest in the store is verified, or latest.json names it ("" when neither).
        The store is asked, not the run's record: a run killed between moving latest.json
        and recording its promotion is promoted all the same."""
        if not version:
            return ""
        manifest = json.loads(self.read(f"{self.prefix}/{version}/manifest.json")[0] or b"{}")
        if manifest.get("status") == "verified":
            return f"release {version} is verified"
        latest = json.loads(self.read(f"{self.prefix}/latest.json")[0] or b"{}")
        return f"latest.json names release {version}" if latest.get("version") == version else ""

    def check(self, version: str) -> list[str]:
        """What is wrong with release version in the store ([] when nothing is): its
        manifest exists and is verified, and every object it names with a sha256 (the zip,
        model, function, layer) exists with those bytes (each is read and hashed)."""
        if not VERSION.fullmatch(version or ""):
            return [f"its version {version!r} is not a release version"]
        key = f"{self.prefix}/{version}/manifest.json"
        body = self.read(key)[0]
        if body is None:
            return [f"its manifest s3://{self.bucket}/{key} does not exist"]
        manifest = json.loads(body or b"{}")
        problems = []
        if manifest.get("status") != "verified":
            status = manifest.get("status") or "without status"
            problems.append(f"its manifest is {status}, not verified")
        for entry in manifest.values():
            if not (isinstance(entry, dict) and entry.get("key") and entry.get("sha256")):
                continue
            held = self.read(entry["key"])[0]
            if held is None:
                problems.append(f"s3://{self.bucket}/{entry['key']} does not exist")
            elif hashlib.sha256(held).hexdigest() != entry["sha256"]:
                problems.append(f"s3://{self.bucket}/{entry['key']} does not have the sha256 "
                                f"its manifest records ({entry['sha256']})")
        return problems

    def read_latest(self, version: str) -> dict:
        """What a release reads before it decides: whether the bucket exists, latest.json,
        the manifest it names ({} when missing or unreadable: the caller judges), what is
        wrong with that release (check), and the manifest of version ({} when none)."""
        names = [b["Name"] for b in self.client.list_buckets().get("Buckets", [])]
        found = {"changed": False, "bucket_found": self.bucket in names, "latest": {},
                 "latest_manifest": {}, "problems": [], "version_manifest": {}}
        if not found["bucket_found"]:
            return found
        latest_key = f"{self.prefix}/latest.json"
        found["latest"] = self._json(latest_key, self.read(latest_key)[0])
        manifest_url = found["latest"].get("manifest")
        if manifest_url:
            key = re.sub(r"^s3://[^/]+/", "", str(manifest_url))
            # unreadable: {}, the caller judges it as a missing one
            with contextlib.suppress(ClientError, ValueError):
                found["latest_manifest"] = json.loads(self.read(key)[0] or b"{}")
        if "version" in found["latest"]:
            found["problems"] = self.check(str(found["latest"]["version"]))
        if version:
            key = f"{self.prefix}/{version}/manifest.json"
            found["version_manifest"] = self._json(key, self.read(key)[0])
        return found

    def _json(self, key: str, body: bytes | None) -> dict:
        """An object's JSON ({} when it does not exist); Refused names one that is not JSON."""
        try:
            return json.loads(body) if body else {}
        except ValueError as error:
            raise Refused(f"s3://{self.bucket}/{key} is not JSON ({error}): a release will "
                          "not decide from it; look at the object, then remove or restore "
                          "it") from error

    def rollback(self, run_id: str, keys: list[str], version: str = "") -> dict:
        """Remove the keys run_id wrote, newest first; keep what another run wrote and any
        layer another manifest names (the manifests are read only when a layer is among
        the keys). A release that is verified or that latest.json names is never rolled
        back: all of its keys stay."""
        promoted = self.promoted(version)
        if promoted:
            present = [key for key in reversed(keys) if self.head(key) is not None]
            return {"deleted": [], "kept": [f"{key} ({promoted})" for key in present]}
        in_use: dict[str, list[str]] = {}
        if any(key.startswith("layers/") for key in keys):
            in_use = _layers_of({v: m for v, m in self.manifests().items() if v != version})
        deleted, kept = [], []
        for key in reversed(keys):
            held = self.head(key)
            if held is None:
                continue
            layer = re.fullmatch(r"layers/([^/]+)/.*", key)
            if held.get("Metadata", {}).get("run-id") != run_id:
                kept.append(f"{key} (written by another run)")
            elif layer and layer.group(1) in in_use:
                kept.append(f"{key} (release {', '.join(sorted(in_use[layer.group(1)]))} uses it)")
            else:
                self.client.delete_object(Bucket=self.bucket, Key=key)
                deleted.append(key)
        return {"deleted": deleted, "kept": kept}

    def move_latest(self, run_id: str, pointer: dict) -> dict:
        """Point latest.json at pointer's release unless it names a newer one."""
        key = f"{self.prefix}/latest.json"
        self._update_lock(run_id, lambda lock: None)  # still ours, and renewed
        for _attempt in range(5):
            body, etag, _metadata = self.read(key)
            current = json.loads(body) if body else {}
            if current.get("created_at", "") > pointer.get("created_at", ""):
                return {"changed": False, "moved": False, "latest": current}
            if current == pointer:
                return {"changed": False, "moved": True, "latest": current}
            try:
                self.write(key, _json(pointer), if_match=etag)
                return {"changed": True, "moved": True, "latest": pointer}
            except ClientError as error:
                if not _precondition_failed(error):
                    raise
            time.sleep(0.2)
        raise Refused(f"s3://{self.bucket}/{key} kept changing: latest.json was not moved")


def _layers_of(manifests: dict[str, dict]) -> dict[str, list[str]]:
    """Layer id -> the versions (of these manifests) that name it."""
    used: dict[str, list[str]] = {}
    for version in sorted(manifests):
        layer = (manifests[version].get("layer") or {}).get("id")
        if layer:
            used.setdefault(layer, []).append(version)
    return used


def _json(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


# -------------------------------------------------------------------------- module


def main() -> None:
    # amazon.aws's connection options (profile, endpoint_url, region, keys, validate_certs,
    # aws_config) come with AnsibleAWSModule: module_defaults group/r_lambda.release.aws.
    module = AnsibleAWSModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": list(ACTIONS)},
            "bucket": {"type": "str", "required": True},
            "prefix": {"type": "str", "default": "releases"},
            "run_id": {"type": "str"},
            "version": {"type": "str", "default": ""},
            "owner": {"type": "dict", "default": {}},
            "key": {"type": "str", "no_log": False},  # an object key, not a secret
            "src": {"type": "path"},
            "files": {"type": "dict"},
            "content": {"type": "str"},
            "create_only": {"type": "bool", "default": True},
            "ttl_minutes": {"type": "int", "default": 60},
            "rollback": {"type": "bool", "default": False},
            "keep": {"type": "int", "default": 5},
            "apply": {"type": "bool", "default": False},
            "pointer": {"type": "dict"},
            "line": {"type": "dict"},
            "encryption": {"type": "str", "default": "AES256"},
        },
        required_if=[
            ("action", "lock", ["run_id"]),
            ("action", "release", ["run_id"]),
            ("action", "put", ["run_id", "key"]),
            ("action", "put_files", ["run_id", "key", "files"]),
            ("action", "get", ["key"]),
            ("action", "move_latest", ["run_id", "pointer"]),
            ("action", "gc", ["run_id"]),
            ("action", "append", ["key", "line"]),
            ("action", "check", ["version"]),
        ],
        mutually_exclusive=[("src", "content")],
    )
    params = module.params
    # Named in the user agent, so that its calls can be told apart (the IAM tests).
    client = module.client("s3", config=Config(user_agent_extra=USER_AGENT))
    store = Store(client, params["bucket"], params["prefix"], params["encryption"])
    try:
        result = ACTIONS[params["action"]](store, params)
    except ParamValidationError as error:
        if params["action"] == "release":  # no such bucket can exist, nor a lock in it
            module.exit_json(changed=False, held=False, rolled_back={})
        module.fail_json(msg=f"S3 {params['action']} in s3://{params['bucket']}: {error}")
    except Refused as refused:
        module.fail_json(msg=str(refused))
    except ClientError as error:
        module.fail_json(msg=f"S3 {params['action']} in s3://{params['bucket']} failed: {error}")
    module.exit_json(**result)


def _lock(store: Store, params: dict) -> dict:
    result = store.lock(params["run_id"], params["version"], params["ttl_minutes"], params["owner"])
    return dict(result, changed=result["acquired"])


def _put(store: Store, params: dict) -> dict:
    if params["src"]:
        with open(params["src"], "rb") as handle:
            body = handle.read()
    else:
        body = (params["content"] or "").encode()
    return store.put(params["run_id"], params["key"], body, create_only=params["create_only"])


def _get(store: Store, params: dict) -> dict:
    body, etag, metadata = store.read(params["key"])
    text = (body or b"").decode(errors="replace")
    return {
        "changed": False,
        "exists": body is not None,
        "etag": etag,
        "content": text,
        "metadata": metadata,
    }


ACTIONS = {
    "lock": _lock,
    "release": lambda store, params: store.release(params["run_id"], params["rollback"]),
    "put": _put,
    "put_files": lambda store, params: store.put_files(
        params["run_id"], params["key"], params["files"]),
    "get": _get,
    "move_latest": lambda store, params: store.move_latest(params["run_id"], params["pointer"]),
    "gc": lambda store, params: store.gc(params["run_id"], params["keep"], params["apply"]),
    "append": lambda store, params: store.append(params["key"], params["line"]),
    "check": lambda store, params: {"changed": False,
                                    "problems": store.check(params["version"])},
    "read": lambda store, params: store.read_latest(params["version"]),
}


if __name__ == "__main__":
    main()
