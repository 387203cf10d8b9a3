"""A wheel installed outside the checkout runs `db upgrade`, `demo` and `serve` (migrations ship inside)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_runs_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=300,
    )
    [wheel] = list(dist.glob("heurmetrics-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "heurmetrics/_migrations/env.py" in names
    assert any(n.startswith("heurmetrics/_migrations/versions/0001") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", str(wheel)], check=True, timeout=600)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "HEURMETRICS_DATABASE_URL": f"sqlite:///{work / 'store.db'}", "PYTHONPATH": ""}
    exe = str(venv / "bin" / "heurmetrics")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)

    upgraded = run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded from empty" in upgraded.stdout
    demo = run("demo", "--days", "60")
    assert demo.returncode == 0, demo.stderr
    # The demo honours HEURMETRICS_DATABASE_URL like every command: serve then shows its data.
    assert "range_bias@2.0.0" in demo.stdout and "store.db" in demo.stdout
    assert not (work / "heurmetrics-demo.db").exists()

    port = free_port()
    server = subprocess.Popen(
        [exe, "serve", "--port", str(port)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "serve did not start within 60 s"
                time.sleep(0.3)
        assert ready.status_code == 200
        # The installed code really is the wheel, not the checkout.
        located = subprocess.run(
            [venv / "bin" / "python", "-c", "import heurmetrics; print(heurmetrics.__file__)"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert str(venv) in located.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
