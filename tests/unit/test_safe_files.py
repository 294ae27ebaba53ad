"""cld_runtime.files: private, exclusive, atomic writes that refuse symlinks and special files (issue 10, 4-5)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from cld_runtime.files import (
    AtomicFile,
    FileWriteError,
    private_dir,
    private_umask,
    safe_writer,
    tighten,
    write_bytes,
    write_text,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_writes_0600_atomically_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    write_text(target, "a,b\n")
    assert target.read_text() == "a,b\n"
    assert mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_overwrites_an_existing_regular_file_and_makes_it_private(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    os.chmod(target, 0o644)
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o600


def test_a_planted_symlink_at_the_old_part_name_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / ".out.csv.part").symlink_to(victim)
    (tmp_path / ".out.csv.partial").symlink_to(victim)
    write_text(tmp_path / "out.csv", "identifiable")
    assert victim.read_text() == "precious"
    assert (tmp_path / "out.csv").read_text() == "identifiable"


def test_refuses_a_symlink_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "out.csv"
    link.symlink_to(victim)
    with pytest.raises(FileWriteError, match="symbolic link"):
        write_text(link, "identifiable")
    assert victim.read_text() == "precious"
    assert link.is_symlink()


def test_refuses_a_fifo_target(tmp_path: Path) -> None:
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    with pytest.raises(FileWriteError, match="not a regular file"):
        write_text(fifo, "x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def device_node(folder: Path) -> Path:
    """A character device of our own (a copy of /dev/null's numbers) in ``folder``: never the system's, which a
    broken writer running as root would replace. Skips where creating device nodes is not permitted."""
    node = folder / "out.csv"
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    return node


def test_refuses_a_device_node_target(tmp_path: Path) -> None:
    node = device_node(tmp_path)
    with pytest.raises(FileWriteError, match="not a regular file"):
        write_text(node, "x")
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_refuses_a_directory_target(tmp_path: Path) -> None:
    with pytest.raises(FileWriteError, match="it is a folder"):
        write_text(tmp_path, "x")


def test_a_missing_parent_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileWriteError, match="the folder does not exist"):
        write_text(tmp_path / "nope" / "out.csv", "x")


def test_a_parent_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileWriteError, match="not a folder"):
        write_text(tmp_path / "file" / "out.csv", "x")


def test_an_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o500)
    try:
        if os.access(folder, os.W_OK):  # root ignores modes: make it read-only another way
            pytest.skip("running as a user who may write any folder (root): covered by the read-only mount test")
        with pytest.raises(FileWriteError, match="permission denied"):
            write_text(folder / "out.csv", "x")
    finally:
        os.chmod(folder, 0o700)


def test_read_only_file_system_is_a_clear_error() -> None:
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc")
    with pytest.raises(FileWriteError, match=r"cannot write /proc/.*: "):
        write_text(Path("/proc/cld-test-out.csv"), "x")


def test_an_error_inside_the_block_leaves_the_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")

    def half_written() -> None:
        with safe_writer(target) as fh:
            fh.write("half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        half_written()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_atomic_file_abort_and_commit(tmp_path: Path) -> None:
    f = AtomicFile(tmp_path / "a.json")
    f.file.write("{}")
    f.abort()
    assert list(tmp_path.iterdir()) == []
    g = AtomicFile(tmp_path / "a.json")
    g.file.write("{}")
    g.commit()
    assert (tmp_path / "a.json").read_text() == "{}"


def test_a_target_replaced_by_a_symlink_while_writing_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out.csv"
    f = AtomicFile(target)
    f.file.write("identifiable")
    target.symlink_to(victim)
    with pytest.raises(FileWriteError, match="symbolic link"):
        f.commit()
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "victim.txt"]


def test_private_dir_and_tighten_and_umask(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir()
    os.chmod(d, 0o755)  # noqa: S103 - the permissive mode of before the fix, which private_dir tightens
    private_dir(d)
    assert mode(d) == 0o700
    f = d / "records.sqlite3"
    f.write_text("x")
    os.chmod(f, 0o644)
    tighten(f)
    assert mode(f) == 0o600
    previous = private_umask()
    try:
        (d / "new").write_text("x")
        (d / "sub").mkdir()
        assert mode(d / "new") == 0o600
        assert mode(d / "sub") == 0o700
    finally:
        os.umask(previous)


def test_a_read_only_file_system_is_named(tmp_path: Path) -> None:
    mnt = tmp_path / "ro"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a read-only tmpfs was refused (needs root): {done.stderr.strip()}")
    try:
        with pytest.raises(FileWriteError, match="read-only file system"):
            write_text(mnt / "out.csv", "x")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
