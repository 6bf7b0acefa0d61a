"""The GPU acceptance run (scripts/gpu_acceptance.py): ten independent checks of the CUDA path."""
