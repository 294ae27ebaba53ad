"""Retry/backoff helper (fake clock and sleep), MESH error classification and settings, file export."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from cld_submission.adapters.transport import (
    DeliveryState,
    FileExportTransport,
    MeshHttpError,
    MeshSettings,
    MeshTransport,
    PermanentTransportError,
    RetryError,
    RetryPolicy,
    SentMessage,
    Transient,
    TransientTransportError,
    Transport,
    UnknownMessageError,
    classify_mesh_error,
    retry_async,
)
from cld_submission.adapters.transport.mesh import _FileSlice
from cld_submission.adapters.transport.mesh_protocol import _pick, mesh_state

# -- retry helper -----------------------------------------------------------------------------------------


class FakeClock:
    """``sleep`` advances ``now``; nothing really waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FlakyError(Exception):
    pass


class BrokenError(Exception):
    pass


def _classify(exc: BaseException) -> Transient | None:
    if isinstance(exc, FlakyError):
        return Transient(retry_after=getattr(exc, "retry_after", None))
    return None


async def test_transient_failures_then_success() -> None:
    clock = FakeClock()
    calls: list[int] = []
    retried: list[tuple[str, int, float]] = []

    async def op(attempt: int) -> str:
        calls.append(attempt)
        if attempt < 3:
            raise FlakyError
        return "ok"

    result = await retry_async(
        "op",
        op,
        policy=RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=10.0, deadline=60),
        classify=_classify,
        sleep=clock.sleep,
        clock=clock,
        rnd=lambda: 0.5,
        on_retry=lambda name, attempt, delay, exc: retried.append((name, attempt, delay)),
    )
    assert result == "ok"
    assert calls == [1, 2, 3]
    # equal jitter with rnd=0.5: 3/4 of the exponential delay (1s, then 2s)
    assert clock.sleeps == [0.75, 1.5]
    assert retried == [("op", 1, 0.75), ("op", 2, 1.5)]


async def test_permanent_failure_is_raised_at_once() -> None:
    clock = FakeClock()
    calls: list[int] = []

    async def op(attempt: int) -> None:
        calls.append(attempt)
        raise BrokenError("400")

    with pytest.raises(BrokenError):
        await retry_async(
            "op",
            op,
            policy=RetryPolicy(),
            classify=_classify,
            sleep=clock.sleep,
            clock=clock,
            rnd=lambda: 0.0,
        )
    assert calls == [1]
    assert clock.sleeps == []


async def test_deadline_exceeded() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=1000, base_delay=1.0, max_delay=4.0, deadline=10.0)

    async def op(attempt: int) -> None:
        raise FlakyError

    with pytest.raises(RetryError) as caught:
        await retry_async(
            "upload", op, policy=policy, classify=_classify, sleep=clock.sleep, clock=clock, rnd=lambda: 0.999
        )
    err = caught.value
    assert err.reason == "deadline"
    assert isinstance(err.last_error, FlakyError)
    assert isinstance(err.__cause__, FlakyError)
    assert sum(clock.sleeps) <= 10.0
    assert max(clock.sleeps) <= 4.0
    assert err.attempts == len(clock.sleeps) + 1
    assert "upload" in str(err)


async def test_explicit_deadline_shared_across_operations() -> None:
    clock = FakeClock()

    async def op(attempt: int) -> None:
        raise FlakyError

    with pytest.raises(RetryError) as caught:
        await retry_async(
            "late",
            op,
            policy=RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=1.0, deadline=999),
            classify=_classify,
            deadline_at=clock.now + 0.5,  # less than one backoff left
            sleep=clock.sleep,
            clock=clock,
        )
    assert caught.value.reason == "deadline"
    assert clock.sleeps == []


async def test_max_attempts_exhausted() -> None:
    clock = FakeClock()

    async def op(attempt: int) -> None:
        raise FlakyError

    with pytest.raises(RetryError) as caught:
        await retry_async(
            "op",
            op,
            policy=RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=1.0, deadline=60),
            classify=_classify,
            sleep=clock.sleep,
            clock=clock,
            rnd=lambda: 0.0,
        )
    assert caught.value.reason == "max_attempts"
    assert caught.value.attempts == 3
    assert clock.sleeps == [0.05, 0.1]


async def test_retry_after_is_honoured_but_capped() -> None:
    clock = FakeClock()

    async def op(attempt: int) -> str:
        if attempt == 1:
            exc = FlakyError()
            exc.retry_after = 3.0  # type: ignore[attr-defined]
            raise exc
        if attempt == 2:
            exc = FlakyError()
            exc.retry_after = 500.0  # type: ignore[attr-defined]
            raise exc
        return "done"

    result = await retry_async(
        "op",
        op,
        policy=RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=5.0, deadline=60),
        classify=_classify,
        sleep=clock.sleep,
        clock=clock,
        rnd=lambda: 0.0,
    )
    assert result == "done"
    assert clock.sleeps == [3.0, 5.0]


def test_backoff_grows_exponentially_to_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    upper = [policy.backoff(n, 0.999999) for n in range(1, 9)]
    lower = [policy.backoff(n, 0.0) for n in range(1, 9)]
    assert lower == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert all(lo <= up <= 8.0 for lo, up in zip(lower, upper, strict=True))
    assert policy.backoff(10_000, 0.5) == 6.0  # no overflow for huge attempt numbers


def test_policy_rejects_inverted_delays() -> None:
    with pytest.raises(ValueError, match="max_delay"):
        RetryPolicy(base_delay=5, max_delay=1)


async def test_cancellation_stops_retrying() -> None:
    started = asyncio.Event()

    async def never_sleep_long(seconds: float) -> None:
        started.set()
        await asyncio.Event().wait()

    async def op(attempt: int) -> None:
        raise FlakyError

    task = asyncio.create_task(retry_async("op", op, policy=RetryPolicy(), classify=_classify, sleep=never_sleep_long))
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- MESH pieces that need no server ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (MeshHttpError("send chunk 1", 503), True),
        (MeshHttpError("send chunk 1", 500), True),
        (MeshHttpError("send chunk 1", 429, retry_after=2.0), True),
        (MeshHttpError("send chunk 1", 408), True),
        (MeshHttpError("send chunk 1", 400), False),
        (MeshHttpError("send chunk 1", 403), False),
        (MeshHttpError("send chunk 1", 417, "EPL-151 unregistered recipient"), False),
        (requests.ConnectionError("refused"), True),
        (requests.Timeout("slow"), True),
        (requests.exceptions.ChunkedEncodingError("cut"), True),
        (requests.exceptions.SSLError("bad cert"), False),
        (ValueError("bug"), False),
    ],
)
def test_classify_mesh_error(exc: BaseException, transient: bool) -> None:
    verdict = classify_mesh_error(exc)
    assert (verdict is not None) is transient


def test_retry_after_travels_with_429() -> None:
    verdict = classify_mesh_error(MeshHttpError("x", 429, retry_after=7.0))
    assert verdict == Transient(retry_after=7.0)


def test_mesh_http_error_text_is_plain() -> None:
    assert str(MeshHttpError("send chunk 2/3", 417, "EPL-151")) == "MESH send chunk 2/3: HTTP 417 (EPL-151)"


def _settings(**overrides: object) -> MeshSettings:
    values: dict[str, object] = {
        "url": "https://mesh.example.invalid",
        "mailbox": "X26ABC1",
        "password": "pw-secret-123",
        "shared_key": "key-secret-456",
        "recipient_mailbox": "X26ABC2",
        "workflow_id": "TEST_WORKFLOW",
    }
    values.update(overrides)
    return MeshSettings.model_validate(values)


def test_settings_hide_secrets() -> None:
    settings = _settings()
    text = repr(settings) + str(settings) + settings.model_dump_json()
    assert "pw-secret-123" not in text
    assert "key-secret-456" not in text
    assert settings.password_value() == "pw-secret-123"
    assert settings.shared_key_value() == b"key-secret-456"


def test_settings_read_secrets_from_files(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    (tmp_path / "key").write_text("shared\n")
    settings = _settings(
        password=None, password_file=tmp_path / "pw", shared_key=None, shared_key_file=tmp_path / "key"
    )
    assert settings.password_value() == "from-file"
    assert settings.shared_key_value() == b"shared"


def test_settings_need_exactly_one_password_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="password"):
        _settings(password=None)
    with pytest.raises(ValueError, match="password"):
        _settings(password_file=tmp_path / "pw")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "CLD_MESH_URL": "https://mesh.example.invalid",
        "CLD_MESH_MAILBOX": "X26ABC1",
        "CLD_MESH_PASSWORD": "env-pw",
        "CLD_MESH_SHARED_KEY": "env-key",
        "CLD_MESH_RECIPIENT_MAILBOX": "X26ABC2",
        "CLD_MESH_WORKFLOW_ID": "TEST_WORKFLOW",
        "CLD_MESH_COMPRESS": "false",
        "CLD_MESH_RETRY__MAX_ATTEMPTS": "4",
    }.items():
        monkeypatch.setenv(key, value)
    settings = MeshSettings()
    assert settings.password_value() == "env-pw"
    assert settings.compress is False
    assert settings.retry.max_attempts == 4
    assert settings.tls_verify() is True
    assert settings.tls_cert() is None


def test_tls_options() -> None:
    settings = _settings(ca_cert="/etc/ca.pem", client_cert="/etc/c.pem", client_key="/etc/k.pem")
    assert settings.tls_verify() == "/etc/ca.pem"
    assert settings.tls_cert() == ("/etc/c.pem", "/etc/k.pem")
    with pytest.raises(ValueError, match="client_key"):
        _settings(client_key="/etc/k.pem")


def test_file_slice_reads_only_its_window() -> None:
    f = io.BytesIO(b"0123456789")
    window = _FileSlice(f, 3, 4)
    assert len(window) == 4
    assert window.read(3) == b"345"
    assert window.read(10) == b"6"
    assert window.read() == b""
    assert b"".join(_FileSlice(io.BytesIO(b"abcdef"), 2, 10)) == b"cdef"


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("uploading", DeliveryState.PENDING),
        ("Accepted", DeliveryState.ACCEPTED),
        ("acknowledged", DeliveryState.ACKNOWLEDGED),
        ("error", DeliveryState.FAILED),
        ("Undeliverable", DeliveryState.FAILED),
    ],
)
def test_mesh_state(status: str, state: DeliveryState) -> None:
    assert mesh_state(status) is state


def test_decide_what_to_do_with_an_earlier_message() -> None:
    transport = MeshTransport(_settings())
    assert transport._decide(None, 3, "L") == "new"
    assert transport._decide(SentMessage("M", "accepted"), 3, "L") == "done"
    assert transport._decide(SentMessage("M", "acknowledged"), 3, "L") == "done"
    assert transport._decide(SentMessage("M", "uploading", chunk_count=3), 3, "L") == "resume"
    assert transport._decide(SentMessage("M", "uploading", chunk_count=2), 3, "L") == "new"
    with pytest.raises(PermanentTransportError, match="M"):
        transport._decide(SentMessage("M", "undeliverable"), 3, "L")


async def test_mesh_send_gives_up_at_the_deadline_when_mesh_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on: connection refused, at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = FakeClock()
    retries: list[str] = []
    transport = MeshTransport(
        _settings(url=f"http://127.0.0.1:{port}", retry=RetryPolicy(max_attempts=100, base_delay=1, deadline=30)),
        sleep=clock.sleep,
        clock=clock,
        on_retry=lambda op, *_: retries.append(op),
    )
    source = _payload(tmp_path)
    with pytest.raises(TransientTransportError, match="deadline") as caught:
        await transport.send(path=source, filename="out.csv", submission_id="s", local_id="L1")
    assert retries
    assert set(retries) == {"lookup by local id"}
    assert sum(clock.sleeps) <= 30
    assert "pw-secret-123" not in str(caught.value)


def test_pick_prefers_the_delivered_message() -> None:
    t1 = datetime(2025, 1, 1, tzinfo=UTC)
    t2 = datetime(2025, 1, 2, tzinfo=UTC)
    orphan = SentMessage("ORPHAN", "uploading", uploaded_at=t2)
    delivered = SentMessage("GOOD", "accepted", uploaded_at=t1)
    assert _pick([orphan, delivered]) == delivered
    assert _pick([SentMessage("A", "uploading", uploaded_at=t1), orphan]) == orphan
    assert _pick([]) is None


# -- file export ------------------------------------------------------------------------------------------


def _payload(tmp_path: Path, content: bytes = b"row_id,value\nR1,alpha\nR2,bravo\n") -> Path:
    source = tmp_path / "source.csv"
    source.write_bytes(content)
    return source


async def test_file_export_writes_file_and_sha256_sidecar(tmp_path: Path) -> None:
    source = _payload(tmp_path)
    export = tmp_path / "export"
    transport = FileExportTransport(export)
    assert isinstance(transport, Transport)

    result = await transport.send(path=source, filename="CLD_X26_2025Q1.csv", submission_id="s", local_id="s")

    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    assert result.transport == "file_export"
    assert result.message_id == "CLD_X26_2025Q1.csv"
    assert result.sha256 == expected
    assert result.bytes_sent == source.stat().st_size
    assert not result.deduplicated
    assert (export / "CLD_X26_2025Q1.csv").read_bytes() == source.read_bytes()
    assert (export / "CLD_X26_2025Q1.csv.sha256").read_text() == f"{expected}  CLD_X26_2025Q1.csv\n"
    assert sorted(p.name for p in export.iterdir()) == ["CLD_X26_2025Q1.csv", "CLD_X26_2025Q1.csv.sha256"]

    status = await transport.status("CLD_X26_2025Q1.csv")
    assert status.state is DeliveryState.ACCEPTED
    with pytest.raises(UnknownMessageError):
        await transport.status("other.csv")


async def test_file_export_renames_a_complete_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _payload(tmp_path, b"x" * 3_000_000)
    export = tmp_path / "export"
    renames: list[tuple[Path, Path, int]] = []
    real_replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        renames.append((Path(src), Path(dst), Path(src).stat().st_size))
        real_replace(src, dst)

    monkeypatch.setattr("cld_submission.adapters.transport.file_export.os.replace", spy)
    await FileExportTransport(export).send(path=source, filename="big.csv", submission_id="s", local_id="s")

    (data_src, data_dst, data_size), (side_src, side_dst, _) = renames
    assert data_dst == export / "big.csv"
    assert data_src.parent == export  # same directory: the rename is atomic
    assert data_src.name.startswith(".")  # hidden while being written
    assert data_size == 3_000_000  # complete before it gets its real name
    assert side_dst == export / "big.csv.sha256"
    assert side_src.parent == export


async def test_file_export_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    export = tmp_path / "export"
    with pytest.raises(FileNotFoundError):
        await FileExportTransport(export).send(
            path=tmp_path / "missing.csv", filename="out.csv", submission_id="s", local_id="s"
        )
    assert list(export.iterdir()) == []


async def test_file_export_is_idempotent_for_the_same_content(tmp_path: Path) -> None:
    source = _payload(tmp_path)
    export = tmp_path / "export"
    transport = FileExportTransport(export)
    first = await transport.send(path=source, filename="out.csv", submission_id="s", local_id="s")
    mtime = (export / "out.csv").stat().st_mtime_ns
    (export / "out.csv.sha256").unlink()  # as if we crashed between the two renames

    again = await transport.send(path=source, filename="out.csv", submission_id="s", local_id="s")
    assert again.deduplicated
    assert (again.message_id, again.sha256, again.bytes_sent) == (
        first.message_id,
        first.sha256,
        first.bytes_sent,
    )
    assert (export / "out.csv").stat().st_mtime_ns == mtime
    assert (export / "out.csv.sha256").read_text() == f"{first.sha256}  out.csv\n"


async def test_file_export_refuses_to_replace_different_content(tmp_path: Path) -> None:
    export = tmp_path / "export"
    transport = FileExportTransport(export)
    await transport.send(path=_payload(tmp_path, b"a\n1\n"), filename="out.csv", submission_id="s", local_id="s")
    with pytest.raises(PermanentTransportError, match="different content"):
        await transport.send(path=_payload(tmp_path, b"a\n2\n"), filename="out.csv", submission_id="s", local_id="s")
    assert (export / "out.csv").read_bytes() == b"a\n1\n"


@pytest.mark.parametrize("name", ["", "../escape.csv", "sub/dir.csv", ".hidden.csv", "x.csv.sha256", "..", "a\\b"])
async def test_file_export_rejects_unsafe_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(PermanentTransportError):
        await FileExportTransport(tmp_path / "export").send(
            path=_payload(tmp_path), filename=name, submission_id="s", local_id="s"
        )
