"""Temporary files of killed saves are removed — ours only, and never one being written."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from canvas.atomic import atomic_write, is_stray_part, remove_stray_parts
from canvas.autosave import remove_stray_files

ROOT = Path(__file__).resolve().parents[2]
OLD = time.time() - 3600


def touch(path: Path, mtime: float = OLD) -> Path:
    path.write_bytes(b"x")
    os.utime(path, (mtime, mtime))
    return path


def kill_a_save(folder: Path) -> None:
    """Save a document into `folder`, and kill the process in the middle of writing it."""
    code = textwrap.dedent(f"""
        import os, numpy as np
        from canvas.document import Document
        from canvas.ora import save_ora
        doc = Document(64, 64)
        for i in range(3):
            doc.add_image_layer(np.full((64, 64, 4), 200, np.uint8), 0, 0)
        save_ora(doc, {str(folder / 'painting.ora')!r})
        class Killer:
            def update(self, done, total, message):
                if done == 2:
                    os._exit(9)  # the process dies: no cleanup runs
            def cancelled(self):
                return False
        save_ora(doc, {str(folder / 'painting.ora')!r}, Killer())
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 9


def test_a_killed_save_leaves_a_part_file_that_is_removed_later(tmp_path):
    kill_a_save(tmp_path)
    parts = [p for p in tmp_path.iterdir() if p.name != "painting.ora"]
    assert len(parts) == 1 and is_stray_part(parts[0].name), parts
    assert remove_stray_parts(tmp_path) == []  # too fresh: it could be a save in progress
    os.utime(parts[0], (OLD, OLD))
    assert remove_stray_parts(tmp_path) == [parts[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["painting.ora"]  # the last good save is intact


def test_files_not_ours_are_never_touched(tmp_path):
    ours = [touch(tmp_path / n) for n in (".cat.ora.k3j_x9a1.part", ".my pic.PNG.abcdefgh.part",
                                          ".autosave-12-ab.json.0123456789.part")]
    not_ours = [touch(tmp_path / n) for n in ("cat.ora", "cat.ora.part", ".cat.ora.part", "notes.abcdefgh.part",
                                              ".cat.txt.abcdefgh.part", ".cat.ora.ABCDEFGH.part", ".cat.ora.abc.part",
                                              ".cat.ora.abcdefgh.part.bak", "x.k3j_x9a1.part")]
    (tmp_path / ".dir.ora.abcdefgh.part").mkdir()
    target = touch(tmp_path / "elsewhere.ora")
    (tmp_path / ".link.ora.abcdefgh.part").symlink_to(target)
    assert sorted(remove_stray_parts(tmp_path)) == sorted(ours)
    assert all(p.exists() for p in not_ours) and target.exists()
    assert (tmp_path / ".dir.ora.abcdefgh.part").is_dir() and (tmp_path / ".link.ora.abcdefgh.part").is_symlink()
    assert remove_stray_parts(tmp_path / "no such folder") == []


def test_a_part_file_being_written_is_never_removed(tmp_path):
    with atomic_write(tmp_path / "slow.ora") as f:
        f.write(b"half")
        (part,) = [p for p in tmp_path.iterdir()]
        os.utime(part, (OLD, OLD))  # a save that spent an hour encoding
        assert remove_stray_parts(tmp_path) == []
    assert (tmp_path / "slow.ora").read_bytes() == b"half"


def test_the_autosave_folder_is_tidied(tmp_path):
    stray = touch(tmp_path / ".autosave-1-abcd.ora.k3j_x9a1.part")
    old_meta = touch(tmp_path / "autosave-1-abcd.json.part")
    keep = touch(tmp_path / "autosave-1-abcd.ora")
    assert sorted(remove_stray_files(tmp_path)) == sorted([stray, old_meta])
    assert keep.exists()


@pytest.mark.parametrize("name", [".a.ora.abcdefgh.part", ".a.b.c.png.z_9y8x7w6.part"])
def test_our_names(name):
    assert is_stray_part(name)
