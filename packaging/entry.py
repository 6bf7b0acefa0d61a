"""PyInstaller's entry script: the frozen app runs the same command line as `python -m ppx_desktop`."""

import multiprocessing
import sys

from ppx_desktop.cli import main

if __name__ == "__main__":
    # A frozen app is its own interpreter: without this, a child process started by the
    # multiprocessing "spawn" method (Windows default) would re-run the app instead of the child.
    multiprocessing.freeze_support()
    sys.exit(main())
