"""Meter peaks and the duplex agent's "speaking" hold, on a manual clock."""

from __future__ import annotations

import numpy as np

from ppx_desktop.audio import Recorder
from ppx_desktop.audio.levels import ActivityHold, PeakHold


def test_peak_hold_rises_at_once_holds_then_falls():
    meter = PeakHold(hold_s=0.5, fall_db_per_s=20.0, floor_db=-60.0)
    assert meter.update(-10.0, 0.0) == -10.0
    # Between syllables the reading drops 40 dB; the bar falls slowly instead of going dead.
    assert meter.update(-50.0, 0.1) == -12.0
    assert meter.update(-50.0, 0.2) == -14.0 and meter.peak == -10.0  # the peak tick holds
    meter.update(-50.0, 0.8)
    assert meter.peak < -10.0  # after the hold it falls too
    assert meter.update(float("nan"), 10.0) == -60.0  # a NaN reading is silence


def test_activity_hold_bridges_short_pauses():
    hold = ActivityHold(-45.0, hold_frames=3)
    seen = [hold.push(db) for db in [-20, -80, -80, -20, -80, -80, -80, -80]]
    assert seen == [True, True, True, True, True, True, False, False]


def test_recorder_shortens_idle_stretches_keeping_the_lead_in():
    rec = Recorder(max_idle_s=0.16)  # two frames
    speech = np.full(1920, 0.5, np.float32)
    for i in range(10):
        rec.add(np.full(1920, i, np.float32), None, active=False)
    rec.add(speech, None)
    user, agent = rec.tracks()
    assert len(user) == 3 * 1920 and rec.left_out == 8 * 1920
    assert np.all(user[:1920] == 8) and np.all(user[1920:3840] == 9)  # the two frames just before
    assert len(agent) == len(user)
