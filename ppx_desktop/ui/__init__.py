"""The desktop window (PySide6). Only this package imports Qt; it drives the session layer."""
