"""The built wheel, installed (not editable) into a fresh virtual environment, serves
the portal from any folder: templates, static files, translations and migrations.

To stay fast, the fresh venv does not download the portal's dependencies again: it
sees exactly the distributions the wheel's own Requires-Dist names (and theirs, and so
on), linked from this environment into one folder on its path. Nothing else of this
environment is visible, the portal itself least of all, and `pip check` confirms the
wheel's requirements are met. A dependency the wheel forgot to declare fails here.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from portal.settings import PROJECT_ROOT
from portal.static_files import plain_css

from conftest import free_port

SOURCE = ("pyproject.toml", "setup.py", "README.md", "src", "templates", "static")


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def build_wheel(tmp: Path) -> Path:
    """Build from a copy of the source, so the checkout gets no build/ or egg-info."""
    tree = tmp / "source"
    for name in SOURCE:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(source, tree / name)
    out = tmp / "dist"
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(tree)
    )
    # setuptools warns before it drops support: a deprecated licence table, or a folder
    # of data it "would ignore" (templates, translations, migrations) if not listed.
    assert "BuildBackendWarning" not in built.stderr, built.stderr
    (wheel,) = out.glob("portal-*.whl")
    return wheel


def requirements_closure(wheel: Path) -> set[str]:
    """Names of the distributions the wheel needs at run time, transitively."""
    with zipfile.ZipFile(wheel) as archive:
        meta_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(meta_name).decode())
    pending = [(Requirement(r), "") for r in metadata.get_all("Requires-Dist") or []]
    found: dict[str, set[str]] = {}
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate(
            {**default_environment(), "extra": extra}
        ):
            continue
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        extras = set(requirement.extras)
        if name in found and extras <= found[name]:
            continue
        found.setdefault(name, set()).update(extras)
        dist = importlib.metadata.distribution(name)
        for child in dist.requires or []:
            for wanted in extras | {""}:
                pending.append((Requirement(child), wanted))
    return set(found)


def link_dependencies(names: set[str], folder: Path) -> None:
    folder.mkdir()
    for name in names:
        dist = importlib.metadata.distribution(name)
        root = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            if top.endswith(".pth") or not (root / top).exists():
                continue
            if not (folder / top).exists():
                (folder / top).symlink_to(root / top)


def fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    site = Path(
        run(
            str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"
        ).stdout.strip()
    )
    deps = tmp / "deps"
    link_dependencies(requirements_closure(wheel), deps)
    (site / "portal-test-deps.pth").write_text(f"{deps}\n")
    pip = (sys.executable, "-m", "pip", "--python", str(python))
    run(*pip, "install", "--quiet", "--no-deps", "--no-index", str(wheel))
    run(*pip, "check")
    return venv


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers.get("content-type", ""), response.read()


def test_wheel_installs_and_serves_from_any_folder(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "portal/templates/base.html",
        "portal/templates/partials/field.html",
        "portal/templates/emails/verify_email.txt",
        "portal/static/js/htmx.min.js",
        "portal/static/css/site.css",
        "portal/migrations/0001_billing.sql",
        "portal/i18n/locale/es/LC_MESSAGES/messages.po",
    ):
        assert shipped in names, f"{shipped} is not in the wheel"

    venv = fresh_venv(tmp_path, wheel)
    bin_ = venv / "bin"
    where = tmp_path / "elsewhere"
    overrides = where / "city-templates" / "partials"
    overrides.mkdir(parents=True)
    footer = (PROJECT_ROOT / "templates" / "partials" / "site_footer.html").read_text()
    (overrides / "site_footer.html").write_text(footer + "<p>City of Ontario override</p>\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_TEMPLATES_DIR"] = "city-templates"

    imported = run(
        str(bin_ / "python"), "-c", "import portal; print(portal.__file__)", cwd=where, env=env
    )
    assert imported.stdout.strip().startswith(str(venv)), imported.stdout

    upgraded = run(str(bin_ / "portal"), "db", "upgrade", cwd=where, env=env)
    assert "applied 0001_billing" in upgraded.stdout
    demo = run(str(bin_ / "portal"), "demo", cwd=where, env=env)
    assert "Customer Number" in demo.stdout and "Username demo" in demo.stdout
    assert (where / "var" / "portal.sqlite3").is_file()

    port = free_port()
    server = subprocess.Popen(
        [str(bin_ / "portal"), "serve", "--port", str(port)],
        cwd=where,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, body = fetch(base + "/")
                break
            except OSError:
                assert server.poll() is None, server.communicate()[0]
                assert time.monotonic() < deadline, "portal serve did not answer"
                time.sleep(0.2)
        landing = body.decode()
        assert status == 200 and "Login to My Account" in landing
        assert "City of Ontario override" in landing  # PORTAL_TEMPLATES_DIR wins ...
        assert "Register Now" in landing  # ... and the shipped templates fill the rest

        status, _, body = fetch(base + "/register")
        assert status == 200 and "New User Registration" in body.decode()

        site_css = (PROJECT_ROOT / "static" / "css" / "site.css").read_text(encoding="utf-8")
        # the shipped stylesheet, inlined (with var() written out: static_files.py)
        assert f"<style>{plain_css(site_css)}</style>" in landing
        script = re.search(r'src="(/static/js/portal\.js\?v=[0-9a-f]+)"', landing).group(1)
        status, kind, body = fetch(base + script)
        assert status == 200 and kind.startswith("text/javascript")
        assert body == (PROJECT_ROOT / "static" / "js" / "portal.js").read_bytes()

        status, _, body = fetch(base + "/", {"Cookie": "portal_lang=es"})
        assert "Iniciar sesión en Mi Cuenta" in body.decode()  # the catalog shipped too

        status, _, body = fetch(base + "/healthz")
        assert status == 200 and body == b"ok\n"
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    assert "Traceback" not in output, output
