"""`ppx-desktop audio-check`: try the microphone and speaker without the model.

Lists the devices, records a few seconds and plays them back, runs the echo self-test and prints
the measured round-trip latency and echo level with a recommended echo mode.
"""

from __future__ import annotations

import argparse


def _device(value: str) -> int | str:
    return int(value) if value.strip().isdigit() else value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", type=_device, default=None, help="input device index or name (default: system default)")
    p.add_argument("--output", type=_device, default=None, help="output device index or name (default: system default)")
    p.add_argument("--seconds", type=float, default=3.0, help="how long to record before playing back (default 3)")
    p.add_argument("--list", action="store_true", help="only list the devices")
    p.add_argument("--no-playback", action="store_true", help="skip the record-and-play-back step")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..audio import FRAME, RATE, AudioConfig, AudioIO, echo_self_test, level_db, list_devices
    from ..audio.devices import AudioDeviceError

    try:
        devices = list_devices()
    except AudioDeviceError as e:
        raise ValueError(str(e)) from e
    if not devices:
        raise ValueError("No audio devices found. Plug in a microphone and speakers or start your sound server.")
    print("Audio devices (> default input, < default output):")
    for d in devices:
        mark = (">" if d.is_default_input else " ") + ("<" if d.is_default_output else " ")
        print(f" {mark} {d.index:3d}  {d.name}  [{d.hostapi}]  in {d.max_input_channels}, out "
              f"{d.max_output_channels}, {d.default_samplerate:.0f} Hz")
    if args.list:
        return 0
    cfg = AudioConfig(input_device=args.input, output_device=args.output, echo="off", monitor_echo=False)
    try:
        with AudioIO(cfg) as io:
            if io.devices:
                print(f"Using input '{io.devices[0].name}' and output '{io.devices[1].name}'")
            st = io.stats
            print(f"Stream: {st.samplerate} Hz, {'one duplex stream' if st.duplex else 'separate streams'}, "
                  f"driver latency {io.latency_ms:.0f} ms")
            if not args.no_playback:
                n = int(round(args.seconds * RATE / FRAME))
                print(f"Recording {n * FRAME / RATE:.1f} s: speak now...")
                rec = []
                while len(rec) < n:
                    f = io.read_frame(timeout=3.0)
                    if f is None:
                        raise ValueError("The microphone delivered no audio for 3 s; check the input device.")
                    rec.append(f)
                audio = np.concatenate(rec)
                peak = 20 * np.log10(max(1e-6, float(np.abs(audio).max())))
                print(f"Recorded level {level_db(audio):.1f} dBFS (peak {peak:.1f}); playing it back...")
                for f in rec:
                    io.write_frame(f)
                while io.playing():
                    io.read_frame(timeout=0.5)
                for _ in range(int(io.latency_ms / 80) + 2):
                    io.read_frame(timeout=0.5)
            print("Echo self-test: playing a short noise burst...")
            result = echo_self_test(io)
            st = io.stats
    except AudioDeviceError as e:
        raise ValueError(str(e)) from e
    note = "" if result.detected else " (driver estimate; no echo)"
    print(f"Round-trip latency: {result.latency_ms:.0f} ms{note}")
    if result.detected:
        corr = f"correlation {result.correlation:.2f}"
        print(f"Echo level: {result.echo_db:.1f} dB relative to the played sound ({corr})")
        if result.aec_erle_db is not None:
            print(f"Echo cancellation (AEC3) removed {result.aec_erle_db:.1f} dB of it")
    else:
        print(f"Echo level: below {result.echo_db:.1f} dB (nothing came back; headphones?)")
    print(f"Recommended echo mode: {result.recommended_mode}")
    print(f"Counters: overruns {st.overruns}, underruns {st.underruns}, dropped input {st.dropped_input} samples")
    return 0
