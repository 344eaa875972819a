"""plugins/modules/cache_entry.py and plugins/lookup/cache_dir.py: the machine-wide cache,
whose entries are used only while they hold the bytes recorded when they were stored."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from module_loading import load

REPO = Path(__file__).resolve().parents[4]
MODULE = REPO / "plugins" / "modules" / "cache_entry.py"
cache_entry = load("cache_entry_module", MODULE)
cache_dir = load("cache_dir_lookup", REPO / "plugins" / "lookup" / "cache_dir.py")


def run(tmp_path: Path, **args: object) -> dict:
    """The module as Ansible runs it: a process reading its arguments from a file."""
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, str(MODULE), str(args_file)],
                          capture_output=True, text=True, check=False)
    return json.loads(done.stdout)


def test_a_stored_file_is_verified_by_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    part = tmp_path / "R.tar.gz.part"
    part.write_bytes(b"built tree")
    entry = tmp_path / "cache" / "R.tar.gz"
    stored = run(tmp_path, path=str(entry), src=str(part), state="stored")
    want = hashlib.sha256(b"built tree").hexdigest()
    assert (stored["sha256"], part.exists(), entry.read_bytes()) == (want, False, b"built tree")
    assert run(tmp_path, path=str(entry)) | {"invocation": None} == {
        "changed": False, "exists": True, "sha256": want, "removed": "", "filled": False,
        "invocation": None}


def test_an_entry_whose_bytes_changed_is_removed_and_reported_not_used(tmp_path: Path) -> None:
    entry = tmp_path / "R.tar.gz"
    entry.write_bytes(b"built tree")
    cache_entry.write_sidecar(entry, hashlib.sha256(b"built tree").hexdigest())
    entry.write_bytes(b"built tre")  # truncated after it was stored
    result = run(tmp_path, path=str(entry))
    assert (result["exists"], result["changed"]) == (False, True)
    assert "not the" in result["removed"] and result["warnings"]
    assert not entry.exists() and not cache_entry.sidecar(entry).exists()


def test_an_entry_never_completed_has_no_digest_and_is_removed(tmp_path: Path) -> None:
    entry = tmp_path / "wheels"
    entry.mkdir()
    (entry / "half.whl").write_bytes(b"x")
    result = run(tmp_path, path=str(entry))
    assert result["exists"] is False and "never completed" in result["removed"]
    assert not entry.exists()


def test_a_folder_digest_covers_every_file_and_its_name(tmp_path: Path) -> None:
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "a.whl").write_bytes(b"a")
    first = cache_entry.entry_sha256(folder)
    (folder / "a.whl").rename(folder / "b.whl")
    renamed = cache_entry.entry_sha256(folder)
    (folder / "b.whl").write_bytes(b"c")
    assert len({first, renamed, cache_entry.entry_sha256(folder)}) == 3


def test_present_fills_a_missing_entry_once_then_uses_it(tmp_path: Path) -> None:
    entry, calls = tmp_path / "cache" / "wheels-1", tmp_path / "calls"
    fill = [["sh", "-c", f'echo x >> {calls}; echo wheel > "$1/w.whl"', "sh", "{part}"]]
    first = run(tmp_path, path=str(entry), state="present", fill=fill)
    second = run(tmp_path, path=str(entry), state="present", fill=fill)
    assert (first["filled"], first["exists"], second["filled"], second["changed"]) == (
        True, True, False, False)
    assert calls.read_text() == "x\n" and (entry / "w.whl").read_text() == "wheel\n"
    assert sorted(p.name for p in entry.parent.iterdir()) == ["wheels-1", "wheels-1.sha256"]


def test_a_failed_fill_names_the_command_and_leaves_nothing(tmp_path: Path) -> None:
    entry = tmp_path / "cache" / "wheels-1"
    result = run(tmp_path, path=str(entry), state="present",
                 fill=[["sh", "-c", 'touch "$1/half.whl"; echo no index >&2; exit 3',
                        "sh", "{part}"]])
    assert result["failed"] is True
    assert "exited with 3: no index" in result["msg"] and "sh -c" in result["msg"]
    assert list(entry.parent.iterdir()) == []


def test_the_cache_folder_follows_the_setting_then_xdg_then_home(tmp_path: Path) -> None:
    home = str(Path.home())
    assert cache_dir.cache_root({"R_LAMBDA_CACHE_DIR": str(tmp_path / "c"),
                                 "XDG_CACHE_HOME": "/x"}) == str(tmp_path / "c")
    assert cache_dir.cache_root({"XDG_CACHE_HOME": "/x"}) == "/x/r-lambda"
    assert cache_dir.cache_root({}) == f"{home}/.cache/r-lambda"


@pytest.mark.parametrize("term", ["/etc", "../up", "a/../../b"])
def test_the_lookup_refuses_folders_outside_the_cache(term: str) -> None:
    with pytest.raises(Exception, match="relative to the cache"):
        cache_dir.LookupModule().run([term])


def test_a_second_run_waits_for_the_claimed_build_instead_of_building_it_too(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(cache_entry, "POLL_SECONDS", 0.05)
    entry = tmp_path / "R.tar.gz"
    first = run(tmp_path, path=str(entry), state="claimed")
    assert (first["claimed"], first["exists"]) == (True, False)
    assert Path(first["claim"]).is_file()
    waiter: dict = {}
    thread = threading.Thread(target=lambda: waiter.update(cache_entry.claimed(entry, 30, 120)))
    thread.start()
    time.sleep(0.3)
    assert not waiter  # still waiting: the first run's claim is alive
    part = tmp_path / "R.tar.gz.part"
    part.write_bytes(b"built")
    cache_entry.store(part, entry)  # the first run stores its build, giving the claim back
    thread.join(10)
    assert (waiter["exists"], waiter["claimed"]) == (True, False)
    assert not Path(first["claim"]).exists()


def test_a_claim_nobody_keeps_alive_is_taken_over(tmp_path: Path) -> None:
    entry = tmp_path / "Python.tar.gz"
    assert cache_entry.take_claim(entry, 120) is True
    assert cache_entry.take_claim(entry, 120) is False
    old = time.time() - 121
    os.utime(cache_entry.claim_file(entry), (old, old))  # its holder stopped touching it
    assert cache_entry.claimed(entry, 30, 120)["claimed"] is True


@pytest.fixture()
def served(tmp_path: Path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www (stopped after the test)."""
    import functools
    import http.server

    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_present_downloads_a_pinned_file_into_the_entry_when_its_sha256_matches(
        tmp_path: Path, served: tuple[Path, str]) -> None:
    www, base = served
    (www / "rpy2_rinterface-3.6.7.tar.gz").write_bytes(b"sdist bytes")
    entry = tmp_path / "cache" / "wheels"
    pin = hashlib.sha256(b"sdist bytes").hexdigest()
    result = run(tmp_path, path=str(entry), state="present",
                 downloads=[{"url": f"{base}/rpy2_rinterface-3.6.7.tar.gz", "sha256": pin}])
    assert (result["filled"], result["exists"]) == (True, True), result
    assert (entry / "rpy2_rinterface-3.6.7.tar.gz").read_bytes() == b"sdist bytes"


def test_a_download_whose_sha256_is_not_the_pin_is_refused_and_nothing_is_stored(
        tmp_path: Path, served: tuple[Path, str]) -> None:
    www, base = served
    (www / "rpy2_rinterface-3.6.7.tar.gz").write_bytes(b"replaced upstream")
    entry = tmp_path / "cache" / "wheels"
    pin = hashlib.sha256(b"sdist bytes").hexdigest()
    result = run(tmp_path, path=str(entry), state="present",
                 downloads=[{"url": f"{base}/rpy2_rinterface-3.6.7.tar.gz", "sha256": pin}],
                 fill=[["true"]])
    assert result["failed"] and f"not the pinned {pin}" in result["msg"], result
    assert not entry.exists() and list((tmp_path / "cache").iterdir()) == []
