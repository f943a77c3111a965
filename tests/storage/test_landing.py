"""``zoo.files.landing_file``: a new file shows under its name only when complete.

On Linux filesystems with O_TMPFILE (ext4 here) the file is unnamed until it is linked into
place; everywhere else it is a hidden temp file renamed into place. Both paths are exercised
(the second by hiding ``os.O_TMPFILE``, as on a platform without it).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest

from zoo.files import landing_file, ordinary_mode


@pytest.fixture(params=["unnamed", "named"])
def mode(request, monkeypatch) -> str:
    if request.param == "named":
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    elif not hasattr(os, "O_TMPFILE"):
        pytest.skip("this platform has no O_TMPFILE")
    return request.param


def test_the_file_appears_complete_and_only_at_the_end(mode, tmp_path):
    final = tmp_path / "sub" / "a.bin"
    with landing_file(final) as out:
        out.write(b"x" * 100_000)
        listing = os.listdir(tmp_path / "sub")
        assert not final.exists()
        # unnamed: nothing in the folder at all; named: one hidden temp file
        assert listing == [] if mode == "unnamed" else len(listing) == 1
        out.seek(0)
        assert out.read(3) == b"xxx"  # readable: a store can hash what it wrote
    assert final.read_bytes() == b"x" * 100_000
    assert os.listdir(tmp_path / "sub") == ["a.bin"]
    assert stat.S_IMODE(final.stat().st_mode) == ordinary_mode()


def test_a_failed_block_leaves_nothing_and_keeps_the_old_file(mode, tmp_path):
    final = tmp_path / "a.bin"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError), landing_file(final) as out:
        out.write(b"new, half written")
        raise RuntimeError("download cut")
    assert final.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_an_existing_file_is_replaced(mode, tmp_path):
    final = tmp_path / "a.bin"
    final.write_bytes(b"old and longer")
    with landing_file(final) as out:
        out.write(b"new")
    assert final.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_a_directory_in_the_way_is_an_error_and_nothing_is_left(mode, tmp_path):
    (tmp_path / "a.bin").mkdir()
    with pytest.raises(OSError), landing_file(tmp_path / "a.bin") as out:
        out.write(b"data")
    assert os.listdir(tmp_path) == ["a.bin"] and (tmp_path / "a.bin").is_dir()


KILLED_WRITER = """
import os, signal, sys
from zoo.files import landing_file
with landing_file(sys.argv[1]) as out:
    out.write(b"y" * 1_000_000)
    out.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_writer_leaves_no_trace(tmp_path):
    """The unnamed file dies with its process: no temp file for gc or the next pull to find."""
    if not hasattr(os, "O_TMPFILE"):
        pytest.skip("this platform has no O_TMPFILE")
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "a.bin")])
    assert proc.returncode == -signal.SIGKILL
    assert os.listdir(tmp_path) == []


def test_a_forked_child_links_its_own_file(tmp_path):
    """The /proc/self/fd handle is per process. A child after fork that used its parent's would
    link whatever the PARENT holds under the child's fd number; here the parent holds a decoy
    there, so that mistake would land the decoy's bytes under the child's name."""
    if not hasattr(os, "O_TMPFILE"):
        pytest.skip("this platform has no O_TMPFILE")
    with landing_file(tmp_path / "parent.bin") as out:  # the parent's handle is open now
        out.write(b"parent")
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            with landing_file(tmp_path / "child.bin") as out:
                out.write(b"child")
                os.read(go_r, 1)  # link only once the parent holds its decoy
            os._exit(0)
        except BaseException:
            os._exit(1)
    decoys = [open(tmp_path / f"decoy{i}", "wb+") for i in range(4)]  # noqa: SIM115
    try:
        for d in decoys:
            d.write(b"decoy")
            d.flush()
        os.write(go_w, b"x")
        _, status = os.waitpid(pid, 0)
    finally:
        for d in decoys:
            d.close()
        os.close(go_r)
        os.close(go_w)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / "child.bin").read_bytes() == b"child"
    assert (tmp_path / "parent.bin").read_bytes() == b"parent"


def test_a_sandbox_that_refuses_the_link_gets_a_copy(tmp_path, monkeypatch):
    """Some sandboxes give O_TMPFILE but refuse linkat through /proc: the bytes are copied
    into a hidden temp file and renamed into place instead, still all or nothing."""
    if not hasattr(os, "O_TMPFILE"):
        pytest.skip("this platform has no O_TMPFILE")

    def refuse(*_args, **_kwargs):
        raise PermissionError("linkat refused")

    monkeypatch.setattr(os, "link", refuse)
    with landing_file(tmp_path / "a.bin") as out:
        out.write(b"z" * 3_000_000)
    assert (tmp_path / "a.bin").read_bytes() == b"z" * 3_000_000
    assert os.listdir(tmp_path) == ["a.bin"]
