"""A wheel installed outside the checkout runs `db upgrade`, `demo` and `serve` (migrations ship inside).

The SDK is light: without extras, `import heurmetrics` loads no web server, dashboard generator or
plotting library, `Recorder` records on SQLite, and a command that needs an extra says which one
in one line (no traceback).
"""

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
#: Packages of the extras that `import heurmetrics` (the SDK) must not load.
EXTRA_MODULES = ("fastapi", "uvicorn", "grafanalib", "matplotlib")

LOADED_EXTRAS = f"""
import sys
import heurmetrics
print(sorted({{m.split('.')[0] for m in sys.modules}} & set({EXTRA_MODULES!r})))
"""

RECORD_ON_SQLITE = """
import sys
from heurmetrics import Recorder
with Recorder(database_url=sys.argv[1]) as rec:
    rv = rec.register_rule_version("light_rule", "1.0.0", params={"w": 3}, source="def f(): pass")
    for i in range(25):
        with rec.execution(rv, mode="live") as ex:
            ex.set_result(outcome="bullish", signal=1.0, confidence=0.5)
    result = rec.flush(timeout=60)
    assert result.complete, result
print("recorded")
"""


def test_import_heurmetrics_loads_no_extra() -> None:
    """In the dev venv every extra is installed; the SDK import must still not load any of them."""
    loaded = subprocess.run(
        [sys.executable, "-c", LOADED_EXTRAS], capture_output=True, text=True, check=True, timeout=120
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout


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
    python = str(venv / "bin" / "python")
    # No extras first: the SDK a rule runner installs.
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheel)], check=True, timeout=600)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "HEURMETRICS_DATABASE_URL": f"sqlite:///{work / 'store.db'}", "PYTHONPATH": ""}
    exe = str(venv / "bin" / "heurmetrics")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)

    def py(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([python, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)

    for module in EXTRA_MODULES:  # really a venv without the extras
        assert py("-c", f"import {module}").returncode != 0, module
    loaded = py("-c", LOADED_EXTRAS)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]", loaded.stdout
    recorded = py("-c", RECORD_ON_SQLITE, f"sqlite:///{work / 'sdk.db'}")
    assert recorded.returncode == 0, recorded.stderr
    assert (work / "sdk.db").is_file()
    counted = py(
        "-c",
        "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("
        "'select count(*) from heuristic_executions').fetchone()[0])",
        str(work / "sdk.db"),
    )
    assert counted.stdout.strip() == "25", counted.stderr

    # Each command that needs an extra says which, in one line, and fails without a traceback.
    for args, extra in [
        (("serve", "--port", str(free_port())), "server"),
        (("dashboards", "build", "--out", str(work / "d")), "monitoring"),
        (("alerts", "build", "--out", str(work / "a")), "monitoring"),
        (("report", "00000000-0000-0000-0000-000000000000", "--out", str(work / "r.html")), "report"),
        (("db", "upgrade", "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none"), "postgres"),
    ]:
        refused = run(*args)
        assert refused.returncode != 0, (args, refused.stdout)
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in refused.stderr, (args, refused.stderr)
        assert f"heurmetrics[{extra}]" in lines[0], (args, lines)
    assert not (work / "d").exists() and not (work / "a").exists() and not (work / "r.html").exists()
    # The library says the same on import.
    guarded = py("-c", "import heurmetrics.monitoring")
    assert guarded.returncode != 0 and "heurmetrics[monitoring]" in guarded.stderr.strip().splitlines()[-1]

    upgraded = run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded from empty" in upgraded.stdout
    demo = run("demo", "--days", "60")
    assert demo.returncode == 0, demo.stderr
    # The demo honours HEURMETRICS_DATABASE_URL like every command: serve then shows its data.
    assert "range_bias@2.0.0" in demo.stdout and "store.db" in demo.stdout
    assert not (work / "heurmetrics-demo.db").exists()

    # The exporter comes with the server extra.
    subprocess.run([python, "-m", "pip", "install", "--quiet", f"{wheel}[server]"], check=True, timeout=600)
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
