"""Qt runs offscreen here: the error-reporting tests need a QApplication but no display."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
