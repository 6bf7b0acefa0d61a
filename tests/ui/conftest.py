"""GUI tests run offscreen with throwaway settings; Qt must see the platform before QApplication exists."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PySide6.QtCore import QCoreApplication, QSettings  # noqa: E402


@pytest.fixture
def store(tmp_path) -> QSettings:
    """A settings store in an ini file of this test only."""
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture(autouse=True)
def _app_names(qapp, tmp_path):
    # Anything that falls back to QSettings() lands in this test's folder, never the user's store.
    QCoreApplication.setOrganizationName("ppx-desktop-test")
    QCoreApplication.setApplicationName("ppx-desktop-test")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qsettings"))
    yield


LOAD_S = 240  # a tiny model loads in seconds, but CI machines here run many suites at once


@pytest.fixture
def make_window(qtbot, store, tiny_model_dir):
    """Opens the real window on the test sound card (or `audio`), loads the tiny model, waits."""
    import numpy as np

    from ppx_desktop.ui.app import create_window

    made = []

    def make(audio=None, speed: float = 2.0, load: bool = True, settings=store):
        win = create_window(settings, audio=audio, test_input=None if audio is not None else np.zeros(0, np.float32),
                            speed=speed)
        qtbot.addWidget(win)
        win.show()
        made.append(win)
        if load:
            win.load_model(tiny_model_dir)
            qtbot.waitUntil(lambda: win.model_ready, timeout=LOAD_S * 1000)
        return win

    yield make
    for win in made:
        win.close()
