"""Execution environments: what a deploy asks for (Spec), one environment (a container
running the runtime client against its own Runtime API), a generation of them, the
dispatcher that hands each request to a free one, and the package unpacked as Lambda does."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import FrontError


@dataclass(frozen=True)
class Spec:
    """What a deploy asks for; equal specs mean nothing to change."""

    package: str
    sha256: str
    version: str
    environments: int
    image: str
    python: str
    memory: str
    timeout: float
    init_timeout: float
    handler: str
    function_name: str
    wheels: str
    # The function's own environment variables (e.g. MODEL_SHA256); Lambda's win over them.
    variables: dict = field(default_factory=dict)


def memory_mb(memory: str) -> int:
    match = re.fullmatch(r"(\d+)([mMgG]?)", memory.strip())
    if not match:
        raise FrontError(f"memory {memory!r}: expected a size such as 128m")
    number = int(match.group(1))
    return number * 1024 if match.group(2).lower() == "g" else number


class Environment:
    """One execution environment: a container running the runtime client against its own
    Runtime API. ``busy`` and ``dead`` are guarded by the dispatcher's lock."""

    def __init__(self, name: str, api: Any, server: Any, client: Any) -> None:
        self.name, self.api, self.server, self.client = name, api, server, client
        self.busy = False
        self.dead = False
        self.invocations = 0

    def usable(self) -> bool:
        return not self.busy and not self.dead and self.api.first_next is not None

    def alive(self) -> bool:
        return self.client.alive()


@dataclass
class Generation:
    number: int
    spec: Spec
    task_dir: Path
    environments: list[Any] = field(default_factory=list)


class Dispatcher:
    """Hands each request to a free environment of the serving generation, one invocation
    at a time per environment; the others wait, first come first served."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self.active: Generation | None = None

    def acquire(self, timeout: float) -> Any | None:
        """A free environment, marked busy; None when none came free within ``timeout``."""
        ticket = object()
        end = time.monotonic() + timeout
        with self._cond:
            self._queue.append(ticket)
            try:
                while True:
                    if self._queue[0] is ticket and self.active is not None:
                        for env in self.active.environments:
                            if env.usable():
                                env.busy = True
                                return env
                    remaining = end - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self, env: Any, dead: bool = False) -> None:
        with self._cond:
            env.busy = False
            env.dead = env.dead or dead
            self._cond.notify_all()

    def replace(self, generation: Generation, old: Any, new: Any) -> bool:
        """Put ``new`` in place of ``old`` while ``generation`` still serves; False (and no
        change) once another generation took over: the caller stops ``new``."""
        with self._cond:
            if self.active is not generation:
                return False
            generation.environments[generation.environments.index(old)] = new
            self._cond.notify_all()
            return True

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def activate(self, generation: Generation | None) -> Generation | None:
        """Send new requests to ``generation``; the one it replaces is returned."""
        with self._cond:
            old, self.active = self.active, generation
            self._cond.notify_all()
            return old

    def wait_idle(self, generation: Generation, timeout: float) -> bool:
        """Wait until no environment of ``generation`` holds an invocation."""
        end = time.monotonic() + timeout
        with self._cond:
            while any(env.busy for env in generation.environments):
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True


def extract(zip_path: Path, dest: Path) -> None:
    """Unzip as Lambda does: every file keeps the mode its zip entry records (the bench
    uses it too)."""
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            path = archive.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)


def unpack(zip_path: Path, dest: Path) -> None:
    """Unzip as Lambda does, into a folder renamed into place when complete."""
    part = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    shutil.rmtree(part, ignore_errors=True)
    extract(zip_path, part)
    for root, dirs, _files in os.walk(part):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    part.chmod(0o755)
    try:
        part.rename(dest)
    except OSError:
        shutil.rmtree(part, ignore_errors=True)
        if not dest.is_dir():
            raise


def file_sha256(path: Path) -> str:
    # The controller's Python is 3.11 or newer (ansible-core 2.19's floor).
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
