"""One widget per module, each a thin view with signals; the main window wires them."""
