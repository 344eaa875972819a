"""The front: the deployments of one state folder, generations of execution environments
(podman containers) started, swapped blue/green, replaced when they die, and each request
handed to one of them."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
import zipfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .common import ID_LABEL, FrontError, li, log
from .environments import Dispatcher, Environment, Generation, Spec, memory_mb, unpack
from .events import Answer, _json_answer, proxy_answer
from .runtime_socket import RELAY, SOCKET_NAME, UnixRuntimeApiServer

VERSION_LABEL = "r-lambda.version"
READY_POLL = 0.05
CONTAINER_PATH = "/usr/local/bin:/usr/bin:/bin"
NOBODY = "65534:65534"
TASK_ROOT, RUNTIME_DIR = "/var/task", "/var/runtime"
# Where a container sees its Runtime API's folder (the socket and relay.py), and the port
# the relay listens on in its own loopback (Lambda's Runtime API is on 127.0.0.1:9001).
API_DIR, API_PORT = "/var/rapid", 9001
# The endpoint's defaults (the role's local_function_read_timeout and _max_connections).
READ_TIMEOUT, MAX_CONNECTIONS = 60.0, 512
MAX_READ_TIMEOUT, MAX_MAX_CONNECTIONS = 3600.0, 16384


def check_limits(read_timeout: float, max_connections: int) -> None:
    """FrontError naming the setting when a limit is out of range."""
    if not 0 < read_timeout <= MAX_READ_TIMEOUT:
        raise FrontError(f"local_function_read_timeout (--read-timeout) must be more than 0 "
                         f"and at most {MAX_READ_TIMEOUT:g} seconds, got {read_timeout:g}")
    if not 1 <= max_connections <= MAX_MAX_CONNECTIONS:
        raise FrontError(f"local_function_max_connections (--max-connections) must be 1 to "
                         f"{MAX_MAX_CONNECTIONS}, got {max_connections}")


def _room_for(connections: int) -> None:
    """Raise the soft limit of open files to fit ``connections`` and the front's own."""
    import resource  # here: only the front needs it

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + 256
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class Front:
    """The deployments of one state folder: generations of environments behind the endpoint."""

    def __init__(self, state_dir: Path, port: int, id_: str, read_timeout: float = READ_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.state_dir, self.port, self.id = state_dir, port, id_
        self.read_timeout, self.max_connections = READ_TIMEOUT, MAX_CONNECTIONS
        self.set_limits(read_timeout, max_connections)
        self.dispatcher = Dispatcher()
        self._deploy_lock = threading.Lock()
        self._generations = 0
        self._stopping = False
        self.started_at = time.time()
        self.requests = 0
        self.last_error: str | None = None

    # ---- state

    def state(self) -> dict[str, Any]:
        generation = self.dispatcher.active
        state: dict[str, Any] = {
            "id": self.id,
            "pid": os.getpid(),
            "port": self.port,
            "url": f"http://127.0.0.1:{self.port}/",
            "control": str(self.state_dir / "control.sock"),
            "started_at": self.started_at,
            "requests": self.requests,
            "last_error": self.last_error,
            "read_timeout": self.read_timeout,
            "max_connections": self.max_connections,
        }
        if generation is not None:
            spec = asdict(generation.spec)
            state.update(spec)
            state["generation"] = generation.number
            state["containers"] = [env.name for env in generation.environments]
        return state

    def set_limits(self, read_timeout: float, max_connections: int) -> bool:
        """The endpoint's read timeout and connection cap, for its next connections; True
        when they changed."""
        check_limits(read_timeout, max_connections)
        _room_for(max_connections)
        changed = (read_timeout, max_connections) != (self.read_timeout, self.max_connections)
        self.read_timeout, self.max_connections = float(read_timeout), int(max_connections)
        return changed

    def write_state(self) -> None:
        path = self.state_dir / "state.json"
        part = path.with_suffix(".json.part")
        part.write_text(json.dumps(self.state(), indent=2, sort_keys=True) + "\n")
        part.replace(path)

    # ---- environments

    def _runtime_dir(self, wheels: Path) -> Path:
        found = sorted(wheels.glob("*.whl"))
        if not found:
            raise FrontError(f"no awslambdaric wheels in {wheels}")
        key = hashlib.sha256("\n".join(p.name for p in found).encode()).hexdigest()[:12]
        runtime = self.state_dir / "runtime" / key
        if not runtime.is_dir():
            runtime.parent.mkdir(parents=True, exist_ok=True)
            part = runtime.with_name(f"{key}.part-{os.getpid()}")
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir()
            for wheel in found:
                with zipfile.ZipFile(wheel) as archive:
                    archive.extractall(part)
            for root, dirs, files in os.walk(part):
                for name in dirs:
                    os.chmod(os.path.join(root, name), 0o755)
                for name in files:
                    os.chmod(os.path.join(root, name), 0o644)
            part.chmod(0o755)
            part.rename(runtime)
        return runtime

    def _task_dir(self, spec: Spec) -> Path:
        task = self.state_dir / "tasks" / spec.sha256[:16]
        if not task.is_dir():
            task.parent.mkdir(parents=True, exist_ok=True)
            unpack(Path(spec.package), task)
        return task

    def container_command(self, name: str, generation: Generation, runtime: Path,
                          env: dict[str, str], api_dir: Path) -> tuple[list[str], dict[str, str]]:
        """The command that runs one environment's runtime client, and its own environment
        (podman's: the client's variables go in with -e). The container has no network
        (its own loopback only), no capability and no way to gain privileges; it reaches its
        Runtime API through relay.py and the socket in ``api_dir``, mounted read-only."""
        spec = generation.spec
        command = [
            "podman", "run", "--rm", "--init", "--pull", "never", "--name", name,
            "--label", f"{ID_LABEL}={self.id}", "--label", f"{VERSION_LABEL}={spec.version}",
            "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,mode=1777,size=512m",
            f"--memory={spec.memory}", f"--memory-swap={spec.memory}", "--network", "none",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--user", NOBODY, "--workdir", TASK_ROOT, "--stop-timeout", "1",
            "-v", f"{generation.task_dir}:{TASK_ROOT}:ro", "-v", f"{runtime}:{RUNTIME_DIR}:ro",
            "-v", f"{api_dir}:{API_DIR}:ro",
            *[arg for key, value in sorted(env.items()) for arg in ("-e", f"{key}={value}")],
            spec.image, spec.python, f"{API_DIR}/{RELAY}", f"{API_DIR}/{SOCKET_NAME}",
            str(API_PORT), "--", spec.python, "-m", "awslambdaric", spec.handler,
        ]
        return command, dict(os.environ)

    def remove_container(self, name: str) -> None:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, check=False)

    def _environment(self, generation: Generation, index: int, runtime: Path) -> Environment:
        spec = generation.spec
        name = f"{self.id}-g{generation.number}-{index}-{uuid.uuid4().hex[:6]}"
        arn = f"arn:aws:lambda:us-east-1:{li.ACCOUNT_ID}:function:{spec.function_name}"
        api = li.RuntimeApi(arn, spec.timeout)
        server = UnixRuntimeApiServer(api, self.state_dir / "runtime-api" / name)
        minor = re.search(r"(\d+\.\d+)", spec.python)
        settings = argparse.Namespace(
            task_root=TASK_ROOT, runtime_dir=RUNTIME_DIR, opt_dir="/opt", region="us-east-1",
            function_name=spec.function_name, handler=spec.handler,
            env={**spec.variables,
                 "PATH": CONTAINER_PATH,
                 "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb(spec.memory)),
                 "AWS_LAMBDA_FUNCTION_VERSION": spec.version},
        )
        env = li.lambda_environment(settings, minor.group(1) if minor else "3",
                                    f"127.0.0.1:{API_PORT}")  # relay.py sets the port it took
        command, client_env = self.container_command(name, generation, runtime, env,
                                                     server.folder)
        client = li.Client(command, client_env, str(self.state_dir))
        server.start()
        try:
            client.start()
        except li.UsageError as exc:
            server.stop()
            raise FrontError(str(exc)) from exc
        return Environment(name, api, server, client)

    def _stop_environment(self, env: Environment) -> None:
        self.remove_container(env.name)
        env.client.stop()
        env.server.stop()

    def _wait_ready(self, environments: list[Environment], timeout: float) -> None:
        end = time.monotonic() + timeout
        while True:
            waiting = [env for env in environments if env.api.first_next is None]
            if not waiting:
                return
            for env in waiting:
                if env.api.init_error is not None:
                    raise FrontError(f"{env.name}: {env.api.init_error.describe()}")
                if not env.alive():
                    env.client.finish_reading()
                    raise FrontError(
                        f"{env.name}: the runtime client "
                        f"{li.exit_description(env.client.returncode())} during init; "
                        f"its last stderr lines:\n{env.client.last_stderr()}")
            if time.monotonic() > end:
                raise FrontError(f"{waiting[0].name}: init did not finish within {timeout:g} s")
            time.sleep(READY_POLL)

    def _start_generation(self, spec: Spec) -> Generation:
        runtime = self._runtime_dir(Path(spec.wheels))
        self._generations += 1
        generation = Generation(self._generations, spec, self._task_dir(spec))
        try:
            for index in range(spec.environments):
                generation.environments.append(self._environment(generation, index, runtime))
            self._wait_ready(generation.environments, spec.init_timeout)
        except BaseException:
            for env in generation.environments:
                self._stop_environment(env)
            raise
        return generation

    def _retire(self, generation: Generation) -> None:
        """Let the old generation finish what it holds, then stop it."""
        self.dispatcher.wait_idle(generation, generation.spec.timeout + 5)
        for env in generation.environments:
            self._stop_environment(env)
        active = self.dispatcher.active
        if active is None or active.task_dir != generation.task_dir:
            shutil.rmtree(generation.task_dir, ignore_errors=True)

    def deploy(self, spec: Spec) -> dict[str, Any]:
        with self._deploy_lock:
            if self._stopping:
                raise FrontError("the front is stopping")
            active = self.dispatcher.active
            # The same bytes and settings, wherever the zip lies now: nothing to change.
            if active is not None and replace(active.spec, package=spec.package) == spec:
                return {**self.state(), "changed": False}
            try:
                generation = self._start_generation(spec)
            except FrontError as exc:
                self.last_error = f"deploy of {spec.version} failed: {exc}"
                self.write_state()
                raise
            old = self.dispatcher.activate(generation)
            self.last_error = None
            self.write_state()
            log(f"serving {spec.version} ({spec.sha256[:12]}) from {spec.environments} "
                f"environment(s), generation {generation.number}")
            if old is not None:
                self._retire(old)
                log(f"stopped generation {old.number} ({old.spec.version})")
            return {**self.state(), "changed": True}

    def _replace_later(self, generation: Generation, env: Environment) -> None:
        def replace() -> None:
            self._stop_environment(env)
            if self._stopping or self.dispatcher.active is not generation:
                return
            try:
                runtime = self._runtime_dir(Path(generation.spec.wheels))
                new = self._environment(generation, generation.environments.index(env), runtime)
                self._wait_ready([new], generation.spec.init_timeout)
            except (FrontError, ValueError) as exc:
                self.last_error = f"replacing {env.name} failed: {exc}"
                log(self.last_error)
                return
            if not self.dispatcher.replace(generation, env, new):
                self._stop_environment(new)  # a deploy retired its generation meanwhile
                return
            self.write_state()

        threading.Thread(target=replace, daemon=True).start()

    # ---- requests

    def invoke(self, event: dict[str, Any], request_id: str) -> tuple[Answer, str | None]:
        """The answer to one event, and the version that gave it (None: no environment)."""
        generation = self.dispatcher.active
        if generation is None:
            return _json_answer(503, {"message": "no function is deployed"}), None
        self.requests += 1
        env = self.dispatcher.acquire(generation.spec.timeout)
        if env is None:
            return _json_answer(429, {"message": "Too Many Requests: every environment "
                                                 "stayed busy", "request_id": request_id}), None
        generation = next(g for g in (self.dispatcher.active, generation)
                          if g is not None and env in g.environments)
        version = generation.spec.version
        invocation = env.api.submit(event)
        state = env.api.wait_for(invocation, generation.spec.timeout, env.alive)
        env.invocations += 1
        if state == li.ANSWERED:
            self.dispatcher.release(env)
            return proxy_answer(invocation.kind or "error", invocation.body, request_id), version
        self.dispatcher.release(env, dead=True)
        self._replace_later(generation, env)
        if state == li.TIMED_OUT:
            return _json_answer(504, {"message": "the function timed out after "
                                                 f"{generation.spec.timeout:g} s",
                                      "request_id": request_id}), version
        return _json_answer(502, {"message": "the function's environment ended",
                                  "request_id": request_id}), version

    def stop(self) -> None:
        with self._deploy_lock:
            self._stopping = True
            old = self.dispatcher.activate(None)
        if old is not None:
            self.dispatcher.wait_idle(old, 5)
            for env in old.environments:
                self._stop_environment(env)
