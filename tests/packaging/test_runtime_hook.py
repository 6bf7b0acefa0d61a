"""The bundle's runtime hook makes sounddevice find the PortAudio inside the bundle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HOOK = Path(__file__).resolve().parents[2] / "packaging" / "hooks" / "rthook_ppx_desktop.py"

PROBE = """
import runpy, sys, ctypes.util
sys._MEIPASS = sys.argv[1]
runpy.run_path(sys.argv[2])
import os
print(ctypes.util.find_library("portaudio"))
print(ctypes.util.find_library("c") is not None)
print(os.environ["TORCHINDUCTOR_COMPILE_THREADS"])
"""


def test_bundled_portaudio_wins_and_other_lookups_still_work(tmp_path):
    lib = tmp_path / "libportaudio.so.2"
    lib.write_bytes(b"")
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path), str(HOOK)], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == [str(lib), "True", "1"]
