"""``cld serve <service>`` with a wrong setting (issue 10 leftovers): one clear line naming the setting, never its
value, and a non-zero exit, for all four services; never a traceback (pydantic ValidationError of the settings,
SettingsError, TenancyError, key errors, OSError on files)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cld_cli.main import app

SECRET = "Secr3t-0nly-in-the-env"  # put into every bad value; it must never reach the output
GOOD_PSEUDO_KEY = "ab" * 32


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No CLD_* setting from the test process; `cld serve` sets a private umask: restore it; never start uvicorn."""
    for key in list(os.environ):
        if key.upper().startswith("CLD_") or key.upper() == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(key)
    import uvicorn

    def _no_start(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the service started: the setting was not refused")

    monkeypatch.setattr(uvicorn, "run", _no_start)
    umask = os.umask(0o022)
    os.umask(umask)
    # create_app configures logging onto CliRunner's (then closed) stderr: put the test process's logging back.
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "faststream", "aiokafka")
    saved = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level) for name in names}
    propagate = {name: logging.getLogger(name).propagate for name in names}
    yield
    os.umask(umask)
    for name, (handlers, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate[name]


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# (service, environment (values may use {tmp}), the setting the message must name)
CASES: dict[str, tuple[str, dict[str, str], str]] = {
    "deadletter-key-too-short": ("validation", {"CLD_DEADLETTER_KEY": SECRET[:12]}, "CLD_DEADLETTER_KEY"),
    "deadletter-key-file-too-short": (
        "submission",
        {"CLD_DEADLETTER_KEY_FILE": "{tmp}/short.key"},
        "CLD_DEADLETTER_KEY",
    ),
    "deadletter-key-file-missing": (
        "pseudonymisation",
        {"CLD_PSEUDO_KEY": GOOD_PSEUDO_KEY, "CLD_DEADLETTER_KEY_FILE": "{tmp}/absent.key"},
        "CLD_DEADLETTER_KEY_FILE",
    ),
    "deadletter-key-file-is-a-folder": (
        "validation",
        {"CLD_DEADLETTER_KEY_FILE": "{tmp}"},
        "CLD_DEADLETTER_KEY_FILE",
    ),
    "no-pseudo-key": ("pseudonymisation", {}, "CLD_PSEUDO_KEY_FILE"),
    "pseudo-key-not-hex": ("pseudonymisation", {"CLD_PSEUDO_KEY": SECRET + "!!"}, "CLD_PSEUDO_KEY"),
    "pseudo-key-file-garbage": (
        "pseudonymisation",
        {"CLD_PSEUDO_KEY_FILE": "{tmp}/garbage.key"},
        "CLD_PSEUDO_KEY_FILE",
    ),
    "pseudo-key-file-unreadable": ("pseudonymisation", {"CLD_PSEUDO_KEY_FILE": "{tmp}"}, "CLD_PSEUDO_KEY_FILE"),
    "tenants-file-not-json": ("ingest", {"CLD_TENANTS_FILE": "{tmp}/tenants.json"}, "CLD_TENANTS_FILE"),
    "tenants-file-missing": ("submission", {"CLD_TENANTS_FILE": "{tmp}/absent.json"}, "CLD_TENANTS_FILE"),
    "no-tenants-file": ("validation", {"CLD_TENANCY_MODE": "required"}, "CLD_TENANTS_FILE"),
    "tenancy-mode-misspelt": ("ingest", {"CLD_TENANCY_MODE": SECRET}, "CLD_TENANCY_MODE"),
    "port-not-a-number": ("ingest", {"CLD_INGEST_PORT": SECRET}, "CLD_INGEST_PORT"),
    "log-level-unknown": ("submission", {"CLD_LOG_LEVEL": SECRET}, "CLD_LOG_LEVEL"),
    "sharing-policy-missing": (
        "submission",
        {"CLD_SHARING_POLICY_FILE": "{tmp}/absent-policy.json"},
        "CLD_SHARING_POLICY_FILE",
    ),
    "sasl-without-user": (
        "validation",
        {"CLD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CLD_KAFKA_SASL_PASSWORD": SECRET},
        "CLD_KAFKA_SASL_USERNAME",
    ),
    "ssl-ca-file-missing": (
        "ingest",
        {"CLD_KAFKA_SECURITY_PROTOCOL": "SSL", "CLD_KAFKA_SSL_CAFILE": "{tmp}/absent-ca.pem"},
        "CLD_KAFKA_SSL_CAFILE",
    ),
    "risk-qi-not-json": (
        "pseudonymisation",
        {"CLD_PSEUDO_KEY": GOOD_PSEUDO_KEY, "CLD_RISK_QI": SECRET},
        "CLD_RISK_QI",
    ),
    "mesh-transport-without-mesh-settings": (  # MESH settings are read with the service's settings (nested)
        "submission",
        {"CLD_SUBMISSION_TRANSPORT": "mesh", "CLD_MESH_MAILBOX": SECRET},
        "CLD_MESH_URL",
    ),
    "postcode-lookup-garbage": (
        "pseudonymisation",
        {"CLD_PSEUDO_KEY": GOOD_PSEUDO_KEY, "CLD_POSTCODE_LOOKUP_FILE": "{tmp}/lookup.csv"},
        "CLD_POSTCODE_LOOKUP_FILE",
    ),
}


def _environment(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    _file(tmp_path, "short.key", SECRET[:10] + "\n")
    _file(tmp_path, "garbage.key", SECRET + "\n")
    _file(tmp_path, "tenants.json", '{"tenants": [' + SECRET)
    _file(tmp_path, "lookup.csv", f"{SECRET},b\n1,2\n")
    base = {
        "CLD_TENANCY_MODE": "open",
        "CLD_SUBMISSION_STATE_DIR": str(tmp_path / "state"),
        "CLD_SUBMISSION_TRANSPORT": "file",
    }
    if "CLD_TENANTS_FILE" in env:
        del base["CLD_TENANCY_MODE"]
    return {**base, **{key: value.format(tmp=tmp_path) for key, value in env.items()}}


def _assert_one_clear_line(output: str, service: str, setting: str) -> None:
    assert "Traceback" not in output
    assert SECRET not in output
    assert SECRET[:10] not in output
    lines = [line for line in output.splitlines() if line.startswith(f"cld serve {service}")]
    assert len(lines) == 1, output
    (line,) = lines
    assert line.startswith(f"cld serve {service}: cannot start: "), line
    assert setting in line, line


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_wrong_setting_is_one_line_naming_it(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service, env, setting = CASES[case]
    for key, value in _environment(tmp_path, env).items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["serve", service])
    # CliRunner turns an uncaught exception into exit code 1 too: it must be typer's clean exit.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    _assert_one_clear_line(result.output, service, setting)


def test_every_service_is_covered() -> None:
    assert {service for service, _, _ in CASES.values()} == {"ingest", "validation", "pseudonymisation", "submission"}


def test_the_real_process_prints_no_traceback(tmp_path: Path) -> None:
    """The same through a real `cld serve` process (its stderr carries the JSON logs as well)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    env.update(_environment(tmp_path, {"CLD_DEADLETTER_KEY_FILE": "{tmp}/short.key"}))
    cld = Path(sys.executable).with_name("cld")
    result = subprocess.run(
        [str(cld), "serve", "submission"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    _assert_one_clear_line(result.stderr, "submission", "CLD_DEADLETTER_KEY")


def test_python_m_cld_submission_is_the_same_entry_point(tmp_path: Path) -> None:
    """``python -m cld_submission`` runs ``cld serve submission`` (one process entry point, issue 12): the same
    settings reading and the same one-line refusal."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    env.update(_environment(tmp_path, {"CLD_DEADLETTER_KEY_FILE": "{tmp}/short.key"}))
    result = subprocess.run(
        [sys.executable, "-m", "cld_submission"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1, result.stderr
    _assert_one_clear_line(result.stderr, "submission", "CLD_DEADLETTER_KEY")
