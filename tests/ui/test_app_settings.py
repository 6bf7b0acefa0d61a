"""Settings persist between runs and a corrupt store falls back to defaults."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from ppx_desktop.ui.settings import AppSettings, Key, load_settings, save_settings


def test_defaults_when_empty(store):
    assert load_settings(store) == AppSettings()


def test_round_trip(tmp_path):
    path = str(tmp_path / "s.ini")
    s = AppSettings(mode="duplex", voice="VARM1", max_steps=300, early_stop=False, echo="off", seed=42,
                    vad_end_silence_s=0.8, end_of_turn="semantic", temp_audio=0.6, device="cpu", offload="auto",
                    context_refresh=False, context_history_s=120, geometry=b"\x01\x02")
    save_settings(s, QSettings(path, QSettings.Format.IniFormat))
    # A new QSettings object on the same file is what the next run of the app sees.
    assert load_settings(QSettings(path, QSettings.Format.IniFormat)) == s


def test_bad_values_fall_back_per_key(store):
    store.setValue(Key.MODE.value, "telepathy")
    store.setValue(Key.MAX_STEPS.value, "lots")
    store.setValue(Key.VAD_THRESHOLD.value, 7.5)
    store.setValue(Key.EARLY_STOP.value, "maybe")
    store.setValue(Key.VOICE.value, "NATM3")
    store.setValue(Key.CONTEXT_HISTORY.value, 45)  # not one of the choices
    store.setValue(Key.END_OF_TURN.value, "telepathy")
    loaded = load_settings(store)
    assert loaded.context_history_s == 60 and loaded.end_of_turn == "silence"
    assert (loaded.mode, loaded.max_steps, loaded.vad_threshold, loaded.early_stop) == ("ptt", 75, 0.5, True)
    assert loaded.voice == "NATM3"  # the good value is kept


def test_garbage_file_gives_defaults(tmp_path):
    path = tmp_path / "broken.ini"
    path.write_bytes(b"\x00\xff[conversation\nmode=\x00\x01=\n\xfe\xfe max_steps=999999\n")
    assert load_settings(QSettings(str(path), QSettings.Format.IniFormat)) == AppSettings()
