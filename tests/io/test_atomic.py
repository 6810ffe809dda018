"""Writers never leave a partial output behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from medseg.io import read_volume, write_volume
from medseg.io.atomic import atomic_output, host_tag, remove_stale_temporaries
from medseg.volume import Volume

REPO = Path(__file__).resolve().parents[2]


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.nii.gz"
    write_volume(Volume(np.ones((2, 2, 2), np.uint8), np.eye(4)), target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="boom"), atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]


def test_killed_writer_leaves_no_output(tmp_path):
    """SIGKILL in the middle of writing a large volume: no file under the final name."""
    target = tmp_path / "big.nii.gz"
    script = textwrap.dedent(
        f"""
        import numpy as np, sys
        sys.path.insert(0, {str(REPO)!r})
        from medseg.io import write_volume
        from medseg.volume import Volume
        import nibabel as nib
        real_save = nib.save
        def slow_save(img, path):
            with open(path, "wb") as fh:
                fh.write(b"x" * 1000)
                fh.flush()
                print("WRITING", flush=True)
                import time; time.sleep(60)
        nib.save = slow_save
        write_volume(Volume(np.zeros((8, 8, 8), np.float32), np.eye(4)), {str(target)!r})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "WRITING"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not target.exists()
    # the killed writer's temporary folder stays until the next run removes it
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".big.nii.gz.")]
    assert len(left) == 1 and left[0].name.endswith(".tmp")
    # a live writer's folder (this process's pid) is kept; the dead one's goes
    # another node's writer on a shared file system: its PID means nothing here, so it stays
    other_host = tmp_path / ".x.nii.gz.0badc0de-999999999.abc.tmp"
    other_host.mkdir()
    assert host_tag() != "0badc0de"
    with atomic_output(tmp_path / "live.nii.gz") as live:
        live.write_bytes(b"x")
        assert remove_stale_temporaries(tmp_path) == left
        assert live.parent.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [other_host.name, "live.nii.gz"]


def test_mhd_companion_data_file_is_moved_with_header(tmp_path):
    v = Volume(np.arange(8, dtype=np.int16).reshape(2, 2, 2), np.eye(4))
    write_volume(v, tmp_path / "x.mhd")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "x.mhd" and len(names) == 2
    np.testing.assert_array_equal(read_volume(tmp_path / "x.mhd").array, v.array)
