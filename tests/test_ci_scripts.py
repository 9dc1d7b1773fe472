"""The Python helpers of the test command (scripts/): which of the host's
files pip's configuration needs inside the Debian sid root, and the summary
that ends scripts/test.sh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def pip_config_paths(env: Dict[str, str], home: Path) -> List[str]:
    """What scripts/pip-config-paths.py prints, with HOME and the user's and
    XDG configuration moved to `home` (the machine's /etc/pip.conf is still read)."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("PIP_") and k not in ("SSL_CERT_FILE", "SSL_CERT_DIR",
                                                      "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                                                      "XDG_CONFIG_HOME")}
    base.update(HOME=str(home), XDG_CONFIG_DIRS=str(home / "xdg"))
    base.update(env)
    proc = subprocess.run([sys.executable, str(SCRIPTS / "pip-config-paths.py")],
                          env=base, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_pip_config_paths_names_what_the_configuration_points_to(tmp_path: Path) -> None:
    for name in ("wheels", "mirror/simple/pkg", "mirror/files", "xdg/pip"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "ca.pem").write_text("certificate\n")
    (tmp_path / "constraints.txt").write_text("")
    (tmp_path / "xdg/pip/pip.conf").write_text(f"[global]\nconstraint = {tmp_path}/constraints.txt\n")
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\n"
        f"find-links = {tmp_path}/wheels\n"
        # A local index links to ../../files/: its parent is needed too.
        f"extra-index-url = file://{tmp_path}/mirror/simple https://index.invalid/simple\n"
        f"cert = {tmp_path}/ca.pem\n"
        "[install]\n"
        f"constraint = {tmp_path}/not-there.txt\n"
    )
    paths = pip_config_paths({"PIP_CONFIG_FILE": str(conf)}, tmp_path)
    assert [p for p in paths if p.startswith(str(tmp_path))] == [
        f"{tmp_path}/ca.pem",
        f"{tmp_path}/constraints.txt",
        f"{tmp_path}/mirror",
        f"{tmp_path}/pip.conf",
        f"{tmp_path}/wheels",
        f"{tmp_path}/xdg/pip/pip.conf",
    ]


def test_pip_config_paths_reads_the_environment(tmp_path: Path) -> None:
    (tmp_path / "links").mkdir()
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs/bundle.crt").write_text("certificate\n")
    paths = pip_config_paths({
        "PIP_CONFIG_FILE": os.devnull,  # (pip: no configuration file; mounted anyway)
        "PIP_FIND_LINKS": f"{tmp_path}/links {tmp_path}/absent",
        "PIP_CERT": f"{tmp_path}/certs/bundle.crt",
        "SSL_CERT_DIR": f"{tmp_path}/certs",
    }, tmp_path)
    # The bundle is inside the directory: mounting the directory is enough.
    assert [p for p in paths if p.startswith(str(tmp_path))] == [
        f"{tmp_path}/certs", f"{tmp_path}/links",
    ]
    assert not any(p == "/dev" or p.startswith("/dev/") for p in paths)


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="{errors}" failures="{failures}" skipped="1" tests="{tests}">
<testcase classname="tests.test_a" name="test_ok"/>
<testcase classname="tests.test_a" name="test_skipped"><skipped message="no"/></testcase>
{failed}
</testsuite></testsuites>
"""


def make_test_dir(root: Path, name: str, version: str, failed: Sequence[str] = ()) -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "version").write_text(version + "\n")
    cases = "\n".join(
        f'<testcase classname="tests.test_b" name="{test}"><failure message="x"/></testcase>'
        for test in failed)
    (directory / "junit.xml").write_text(JUNIT.format(
        errors=0, failures=len(failed), tests=2 + len(failed), failed=cases))
    return directory


def summary(*reports: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, str(SCRIPTS / "test-summary.py"), *reports],
                          capture_output=True, text=True)


def test_summary_names_each_version_its_failures_and_the_step_that_failed(tmp_path: Path) -> None:
    ok = make_test_dir(tmp_path, "py3.11", "3.11.7")
    bad = make_test_dir(tmp_path, "sid-py3.14", "3.14.10", failed=["test_one", "test_two"])
    setup = tmp_path / "sid-py3.15"
    setup.mkdir()
    (setup / "version").write_text("3.15.2\n")
    (setup / "setup-failed").write_text('pip install ".[test]" failed\n')
    proc = summary(f"/usr/bin/python3.11|{ok}|", f"sid:3.14|{bad}|running in the root failed",
                   f"sid:3.15|{setup}|", f"sid:3.16|{tmp_path / 'none'}|making the sid root failed",
                   "/bin/false||cannot run /bin/false")
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "",
        "=== dhatc test summary",
        "CPython 3.11.7: 1 passed, 0 failed, 1 skipped",
        "CPython 3.14.10 (Debian sid root): 1 passed, 2 failed, 1 skipped",
        "    failed: tests.test_b::test_one",
        "    failed: tests.test_b::test_two",
        'CPython 3.15.2 (Debian sid root): FAILED: pip install ".[test]" failed, no tests ran',
        "CPython 3.16 (Debian sid root): FAILED: making the sid root failed",
        "/bin/false: FAILED: cannot run /bin/false",
        "total: 2 passed, 5 failed, 2 skipped",
    ]


def test_summary_passes_only_when_every_version_passed(tmp_path: Path) -> None:
    one = make_test_dir(tmp_path, "a", "3.9.18")
    two = make_test_dir(tmp_path, "b", "3.15.2")
    passed = summary(f"python3.9|{one}|", f"sid:3.15|{two}|")
    assert passed.returncode == 0, passed.stdout
    assert passed.stdout.splitlines()[-1] == "total: 2 passed, 0 failed, 2 skipped"
    assert summary().returncode == 1  # no version ran
