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
