"""The host swap device: the device model lives in :mod:`pfsim.machine.swapdev` (the guest's
swap uses it too); this module keeps the host's import path."""

from __future__ import annotations

from pfsim.machine.swapdev import PRESETS, SwapDevice, SwapParams, swap_params

__all__ = ["PRESETS", "SwapDevice", "SwapParams", "swap_params"]
