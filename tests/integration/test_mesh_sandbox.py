"""MeshTransport against NHS England's MESH sandbox (plain http, canned mailboxes X26ABC1 -> X26ABC2).

Only synthetic data: rows of generated text, no personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mesh_client import MeshClient

from cld_submission.adapters.transport import (
    DeliveryState,
    MeshSettings,
    MeshTransport,
    PermanentTransportError,
    RetryPolicy,
    UnknownMessageError,
)
from tests.integration import mesh_fixtures
from tests.integration.mesh_fixtures import MeshSandboxControl

pytestmark = pytest.mark.integration

# The session fixtures (the lead's conftest may import them instead).
mesh_sandbox = mesh_fixtures.mesh_sandbox
mesh_sandbox_control = mesh_fixtures.mesh_sandbox_control

SENDER = "X26ABC1"
RECEIVER = "X26ABC2"
WORKFLOW = "TEST_WORKFLOW"
PASSWORD = "password"
SHARED_KEY = "Banana"
CHUNK = 512 * 1024
FIVE_MB = 5 * 1024 * 1024


def _settings(url: str, **overrides: object) -> MeshSettings:
    values: dict[str, object] = {
        "url": url,
        "mailbox": SENDER,
        "password": PASSWORD,
        "shared_key": SHARED_KEY,
        "recipient_mailbox": RECEIVER,
        "workflow_id": WORKFLOW,
        "verify_tls": False,
        "max_chunk_size": CHUNK,
        "compress": True,
        "request_timeout": 30,
        "retry": RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=0.5, deadline=30),
    }
    values.update(overrides)
    return MeshSettings.model_validate(values)


def _make_csv(path: Path, size: int, seed: int = 7) -> str:
    """A synthetic CSV of at least ``size`` bytes; returns its sha256."""
    rnd = random.Random(seed)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    digest = hashlib.sha256()
    written = 0
    with path.open("wb") as f:
        header = b"row_id,category,token,amount,note\n"
        f.write(header)
        digest.update(header)
        written += len(header)
        row = 0
        while written < size:
            line = (
                f"R{row:09d},{rnd.choice(words)},{rnd.getrandbits(64):016x},"
                f"{rnd.randint(0, 99999)},{rnd.choice(words)} {rnd.choice(words)}\n"
            ).encode()
            f.write(line)
            digest.update(line)
            written += len(line)
            row += 1
    return digest.hexdigest()


@contextlib.contextmanager
def _receiver(url: str) -> Iterator[MeshClient]:
    client = MeshClient(url, RECEIVER, PASSWORD, shared_key=SHARED_KEY.encode(), verify=False, max_retries=0)
    with contextlib.closing(client):
        yield client


def _inbox(url: str) -> list[str]:
    with _receiver(url) as client:
        return list(client.list_messages())


def _drain(url: str) -> None:
    """Acknowledge whatever earlier tests left in the receiver's inbox."""
    with _receiver(url) as client:
        for message_id in client.list_messages():
            client.acknowledge_message(message_id)
        assert client.list_messages() == []


def _retrieve(url: str, message_id: str) -> tuple[str, int, str | None, str | None]:
    """sha256, size, local id and file name of a message, streamed from the receiver's inbox."""
    with _receiver(url) as client, contextlib.closing(client.retrieve_message(message_id)) as message:
        digest = hashlib.sha256()
        size = 0
        while block := message.read(256 * 1024):
            digest.update(block)
            size += len(block)
        return digest.hexdigest(), size, message.local_id, message.filename


def _acknowledge(url: str, message_id: str) -> None:
    with _receiver(url) as client:
        client.acknowledge_message(message_id)


async def test_chunked_compressed_send_is_delivered_intact(mesh_sandbox: str, tmp_path: Path) -> None:
    await asyncio.to_thread(_drain, mesh_sandbox)
    source = tmp_path / "cld_submission.csv"
    sha = _make_csv(source, FIVE_MB)
    size = source.stat().st_size
    transport = MeshTransport(_settings(mesh_sandbox))
    local_id = f"sub-{uuid.uuid4()}"

    started = time.perf_counter()
    result = await transport.send(path=source, filename=source.name, submission_id=local_id, local_id=local_id)
    elapsed = time.perf_counter() - started
    print(f"\nMESH sandbox send: {size} bytes, {-(-size // CHUNK)} chunks, gzip, {elapsed:.2f}s")

    assert result.transport == "mesh"
    assert result.sha256 == sha
    assert result.bytes_sent == size
    assert not result.deduplicated

    found = await transport.find_by_local_id(local_id)
    assert found is not None
    assert found.message_id == result.message_id
    assert found.chunk_count == -(-size // CHUNK) > 1

    before = await transport.status(result.message_id)
    assert before.state is DeliveryState.ACCEPTED

    assert await asyncio.to_thread(_inbox, mesh_sandbox) == [result.message_id]
    got_sha, got_size, got_local_id, got_name = await asyncio.to_thread(_retrieve, mesh_sandbox, result.message_id)
    assert (got_sha, got_size) == (sha, size)
    assert got_local_id == local_id
    assert got_name == source.name

    # Downloaded but not yet acknowledged: still only accepted.
    assert (await transport.status(result.message_id)).state is DeliveryState.ACCEPTED
    await asyncio.to_thread(_acknowledge, mesh_sandbox, result.message_id)
    after = await transport.status(result.message_id)
    assert after.state is DeliveryState.ACKNOWLEDGED
    assert await asyncio.to_thread(_inbox, mesh_sandbox) == []


async def test_resend_with_same_local_id_creates_no_second_message(mesh_sandbox: str, tmp_path: Path) -> None:
    await asyncio.to_thread(_drain, mesh_sandbox)
    source = tmp_path / "resend.csv"
    _make_csv(source, 300 * 1024, seed=11)
    transport = MeshTransport(_settings(mesh_sandbox, max_chunk_size=128 * 1024))
    local_id = f"sub-{uuid.uuid4()}"

    first = await transport.send(path=source, filename=source.name, submission_id=local_id, local_id=local_id)
    again = await transport.send(path=source, filename=source.name, submission_id=local_id, local_id=local_id)
    assert again.message_id == first.message_id
    assert again.deduplicated
    assert again.sha256 == first.sha256
    assert await asyncio.to_thread(_inbox, mesh_sandbox) == [first.message_id]

    # Still deduplicated once the recipient has acknowledged it (a crash after delivery, before our ack).
    await asyncio.to_thread(_acknowledge, mesh_sandbox, first.message_id)
    third = await transport.send(path=source, filename=source.name, submission_id=local_id, local_id=local_id)
    assert third.message_id == first.message_id
    assert third.deduplicated
    assert await asyncio.to_thread(_inbox, mesh_sandbox) == []


async def test_crash_mid_upload_is_resumed_into_one_message(mesh_sandbox: str, tmp_path: Path) -> None:
    await asyncio.to_thread(_drain, mesh_sandbox)
    source = tmp_path / "partial.csv"
    sha = _make_csv(source, 700 * 1024, seed=13)
    size = source.stat().st_size
    chunk = 256 * 1024
    total = -(-size // chunk)
    local_id = f"sub-{uuid.uuid4()}"

    def post_first_chunk_then_crash() -> str:
        with MeshClient(
            mesh_sandbox, SENDER, PASSWORD, shared_key=SHARED_KEY.encode(), verify=False, max_retries=0
        ) as client:
            with source.open("rb") as f:
                first = io.BytesIO(f.read(chunk))
            response = client.send_chunk(
                RECEIVER,
                first,
                chunk_num=1,
                total_chunks=total,
                compress=True,
                workflow_id=WORKFLOW,
                filename=source.name,
                local_id=local_id,
            )
            assert response.status_code == 202
            return str(response.json()["message_id"])

    partial_id = await asyncio.to_thread(post_first_chunk_then_crash)
    assert await asyncio.to_thread(_inbox, mesh_sandbox) == []  # incomplete messages are not delivered

    transport = MeshTransport(_settings(mesh_sandbox, max_chunk_size=chunk))
    assert (await transport.status(partial_id)).state is DeliveryState.PENDING
    result = await transport.send(path=source, filename=source.name, submission_id=local_id, local_id=local_id)
    assert result.message_id == partial_id
    assert await asyncio.to_thread(_inbox, mesh_sandbox) == [partial_id]
    got_sha, got_size, _, _ = await asyncio.to_thread(_retrieve, mesh_sandbox, partial_id)
    assert (got_sha, got_size) == (sha, size)


async def test_orphaned_upload_with_other_chunking_is_left_to_expire(mesh_sandbox: str, tmp_path: Path) -> None:
    """An unfinished upload that cannot be resumed (chunk size changed) is never delivered; a new message is
    sent, and later resends find the delivered one among the two (MESH answers 300 for the local id)."""
    await asyncio.to_thread(_drain, mesh_sandbox)
    source = tmp_path / "orphan.csv"
    sha = _make_csv(source, 400 * 1024, seed=19)
    local_id = f"sub-{uuid.uuid4()}"

    def orphan() -> str:
        with MeshClient(
            mesh_sandbox, SENDER, PASSWORD, shared_key=SHARED_KEY.encode(), verify=False, max_retries=0
        ) as client:
            response = client.send_chunk(
                RECEIVER,
                io.BytesIO(b"row_id\n"),
                chunk_num=1,
                total_chunks=9,
                workflow_id=WORKFLOW,
                local_id=local_id,
            )
            assert response.status_code == 202
            return str(response.json()["message_id"])

    orphan_id = await asyncio.to_thread(orphan)
    transport = MeshTransport(_settings(mesh_sandbox, max_chunk_size=128 * 1024))
    first = await transport.send(path=source, filename=source.name, submission_id=local_id, local_id=local_id)
    assert first.message_id != orphan_id
    assert not first.deduplicated
    again = await transport.send(path=source, filename=source.name, submission_id=local_id, local_id=local_id)
    assert again.message_id == first.message_id
    assert again.deduplicated
    assert await asyncio.to_thread(_inbox, mesh_sandbox) == [first.message_id]
    assert (await asyncio.to_thread(_retrieve, mesh_sandbox, first.message_id))[0] == sha
    assert (await transport.status(orphan_id)).state is DeliveryState.PENDING


async def test_mesh_outage_is_ridden_out_with_exactly_one_message(
    mesh_sandbox: str,
    mesh_sandbox_control: MeshSandboxControl,
    tmp_path: Path,
) -> None:
    await asyncio.to_thread(_drain, mesh_sandbox)
    source = tmp_path / "outage.csv"
    sha = _make_csv(source, 2 * 1024 * 1024, seed=17)
    local_id = f"sub-{uuid.uuid4()}"
    failures: list[str] = []
    two_failures = asyncio.Event()

    def on_retry(operation: str, attempt: int, delay: float, exc: BaseException) -> None:
        failures.append(f"{operation}#{attempt}:{type(exc).__name__}")
        if len(failures) >= 2:
            two_failures.set()

    transport = MeshTransport(
        _settings(
            mesh_sandbox,
            retry=RetryPolicy(max_attempts=10_000, base_delay=0.1, max_delay=1.0, deadline=120),
        ),
        on_retry=on_retry,
    )

    await asyncio.to_thread(mesh_sandbox_control.stop)
    try:
        task = asyncio.create_task(
            transport.send(path=source, filename=source.name, submission_id=local_id, local_id=local_id)
        )
        await asyncio.wait_for(two_failures.wait(), timeout=30)
        assert not task.done()
    finally:
        await asyncio.to_thread(mesh_sandbox_control.start)
    result = await asyncio.wait_for(task, timeout=120)

    assert len(failures) >= 2
    assert await asyncio.to_thread(_inbox, mesh_sandbox) == [result.message_id]
    got_sha, _, got_local_id, _ = await asyncio.to_thread(_retrieve, mesh_sandbox, result.message_id)
    assert got_sha == sha
    assert got_local_id == local_id


async def test_bad_credentials_fail_at_once_without_leaking_them(mesh_sandbox: str, tmp_path: Path) -> None:
    source = tmp_path / "small.csv"
    _make_csv(source, 10 * 1024)
    retries: list[str] = []
    secret = f"wrong-{uuid.uuid4().hex}"
    transport = MeshTransport(_settings(mesh_sandbox, password=secret), on_retry=lambda op, *_: retries.append(op))
    with pytest.raises(PermanentTransportError) as caught:
        await transport.send(path=source, filename=source.name, submission_id="s1", local_id=f"sub-{uuid.uuid4()}")
    assert "HTTP 403" in str(caught.value)
    assert secret not in str(caught.value)
    assert secret not in repr(transport.settings)
    assert retries == []


async def test_unknown_recipient_is_a_permanent_error(mesh_sandbox: str, tmp_path: Path) -> None:
    source = tmp_path / "small.csv"
    _make_csv(source, 10 * 1024)
    transport = MeshTransport(_settings(mesh_sandbox, recipient_mailbox="X26NOPE9"))
    with pytest.raises(PermanentTransportError, match="HTTP 417"):
        await transport.send(path=source, filename=source.name, submission_id="s2", local_id=f"sub-{uuid.uuid4()}")


async def test_status_of_unknown_message(mesh_sandbox: str) -> None:
    transport = MeshTransport(_settings(mesh_sandbox))
    with pytest.raises(UnknownMessageError):
        await transport.status("00000000000000000000000000000000")
