"""Bad input of every kind the command line meets (corrupt, truncated, absurd and hostile files,
a hostile Hub, a full disk): each gets one clear error line naming the file and what to do, no
traceback, and no file on disk changes (outputs of a failed run included).

The cases are the ones issue 17 found, and the ones already handled before it, so they stay
handled. Each runs the real command in-process on the tiny model; permissions and a full disk
are simulated (the suite runs as root here, which no permission stops).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from ppx_desktop.cli import main
from ppx_desktop.engine.tiny import synthetic_voice

SR = 24_000


@dataclass
class Workspace:
    root: Path
    model: Path  # the shared tiny model: never to be changed by any case
    monkeypatch: pytest.MonkeyPatch  # the test's (environment variables)
    sim: pytest.MonkeyPatch = field(default_factory=pytest.MonkeyPatch)  # simulated refusals, undone after the run
    cleanups: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.input = self.wav("in.wav", speechlike(2.0))
        self.out_wav = self.root / "out.wav"
        self.out_json = self.root / "out.json"
        self.out_wav.write_bytes(b"the previous run's answer")  # a failed run must leave both as they are
        self.out_json.write_text('["previous"]')

    def wav(self, name: str, audio: np.ndarray, rate: int = SR, subtype: str = "PCM_16") -> Path:
        path = self.root / name
        sf.write(str(path), audio, rate, subtype=subtype)
        return path

    def file(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def model_copy(self) -> Path:
        dest = self.root / "model"
        shutil.copytree(self.model, dest)
        return dest

    def offline(self, *extra: str, model: Path | None = None, voice: str = "NATF0", out_wav=None, out_text=None,
                input_wav=None) -> list[str]:
        return ["offline", "--model-dir", str(model or self.model), "--voice", voice,
                "--input-wav", str(input_wav or self.input), "--output-wav", str(out_wav or self.out_wav),
                "--output-text", str(out_text or self.out_json), "--device", "cpu", *extra]

    def respond(self, *extra: str, voice: str = "NATF0", out_wav=None, input_wav=None) -> list[str]:
        return ["respond", "--model-dir", str(self.model), "--voice", voice, "--input-wav",
                str(input_wav or self.input), "--output-wav", str(out_wav or self.out_wav),
                "--output-text", str(self.out_json), "--device", "cpu", "--max-steps", "5", *extra]

    # --- simulated file-system refusals -----------------------------------------------------
    def deny_stat_inside(self, folder: Path) -> None:
        """Like a folder without search permission: stat of anything inside it fails."""
        real = os.stat
        prefix = str(folder) + os.sep

        def stat(path, *a, **kw):
            if str(path).startswith(prefix):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path, *a, **kw)

        self.sim.setattr(os, "stat", stat)

    def deny_create_in(self, folder: Path) -> None:
        """Like a read-only folder: creating a file in it fails."""
        real = os.open

        def open_(path, flags, *a, **kw):
            if flags & os.O_CREAT and Path(path).parent == folder:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path, flags, *a, **kw)

        self.sim.setattr(os, "open", open_)


def speechlike(seconds: float, index: int = 1) -> np.ndarray:
    return np.tile(synthetic_voice(index, seconds=2.0), int(np.ceil(seconds / 2)))[: int(seconds * SR)]


def voice_file(ws: Workspace, name: str = "bad.pt", **change) -> Path:
    """A copy of a preset voice with `change` applied to its tensors."""
    data = torch.load(ws.model / "voices" / "NATF0.pt", weights_only=True)
    for key, fn in change.items():
        data[key] = fn(data[key])
    buf = io.BytesIO()
    torch.save(data, buf)
    return ws.file(name, buf.getvalue())


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this would run",))


def weights_with(ws: Workspace, change: tp.Callable[[dict], None]) -> Path:
    model = ws.model_copy()
    tensors = load_file(str(model / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(model / "model.safetensors"))
    return model


def first_weight(tensors: dict) -> str:
    return sorted(k for k in tensors if "transformer" in k and k.endswith("weight"))[0]


def nan_one(tensors: dict) -> None:
    key = first_weight(tensors)
    tensors[key] = tensors[key].clone()
    tensors[key][0, 0] = float("nan")


def nan_all(tensors: dict) -> None:
    for key, t in tensors.items():
        if t.is_floating_point():
            tensors[key] = torch.full_like(t, float("nan"))


def as_int(tensors: dict) -> None:
    key = first_weight(tensors)
    tensors[key] = (tensors[key] * 100).to(torch.int32)


def downloads_json(ws: Workspace, data: bytes) -> list[str]:
    home = Path(os.environ["PPX_DESKTOP_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "downloads.json").write_bytes(data)
    argv = ws.offline()
    del argv[1:3]  # no --model-dir: the downloaded model is looked up
    return argv


def fake_hub(ws: Workspace, **attrs) -> list[str]:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "assets"))  # the fake Hub and its files
    from hub_server import FakeHub
    from test_hub import model_files

    from ppx_desktop.assets import hub

    server = FakeHub(model_files())
    for key, value in attrs.items():
        setattr(server, key, value)
    server.start()
    ws.cleanups.append(server.stop)
    ws.monkeypatch.setenv("HF_ENDPOINT", server.url)
    ws.monkeypatch.setattr(hub, "RETRY_WAIT", 0.0)
    return ["download"]


def simulate_full_disk_on(ws: Workspace, name: str) -> None:
    from ppx_desktop.commands import outputs

    real = outputs._write_new

    def write(path, data):
        if path.name.startswith(f".{name}."):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    ws.sim.setattr(outputs, "_write_new", write)


def little_free_space(ws: Workspace) -> None:
    from ppx_desktop.commands import outputs

    real = shutil.disk_usage
    ws.sim.setattr(outputs.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))


def data_home_is_a_file(ws: Workspace) -> list[str]:
    blocker = ws.file("not-a-folder", b"x")
    ws.monkeypatch.setenv("PPX_DESKTOP_HOME", str(blocker))
    return ["voices", "list", "--model-dir", str(ws.model)]


def voices_folder_is_a_file(ws: Workspace) -> list[str]:
    home = Path(os.environ["PPX_DESKTOP_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "voices").write_bytes(b"x")
    return ["voices", "list", "--model-dir", str(ws.model)]


LONG_PROMPT = " ".join(["conversation"] * 400)

# (id, setup(ws) -> argv, words the error must say, exit code: 1 an error, 2 a refused option)
CASES: list[tuple[str, tp.Callable[[Workspace], list[str]], str, int]] = [
    # --- voice files: ids beyond the cards, hostile and damaged files ---
    ("voice-audio-ids-beyond-the-card",
     lambda ws: ws.offline(voice=str(voice_file(ws, cache=lambda c: c.index_fill(1, torch.tensor([3]), 9999)))),
     r"bad\.pt: its audio token ids run from -?\d+ to 9999, but this model's audio tokens are -2 to 32", 1),
    ("voice-text-ids-beyond-the-card",
     lambda ws: ws.offline(voice=str(voice_file(ws, cache=lambda c: c.index_fill(1, torch.tensor([0]), 300)))),
     r"bad\.pt: its text token ids run from 300 to 300", 1),
    ("voice-ids-far-below-zero",
     lambda ws: ws.offline(voice=str(voice_file(ws, cache=lambda c: c - 100))), r"bad\.pt: its .* token ids", 1),
    ("voice-cache-other-size",
     lambda ws: ws.offline(voice=str(voice_file(ws, cache=lambda c: torch.cat([c, c], dim=2)))),
     r"bad\.pt: 'cache' has 8 columns, this model's generator keeps 4", 1),
    ("voice-random-bytes", lambda ws: ws.offline(voice=str(ws.file("bad.pt", os.urandom(4000)))),
     r"bad\.pt is not a readable voice file: it is damaged or not a voice", 1),
    ("voice-text-file", lambda ws: ws.offline(voice=str(ws.file("bad.pt", b"hello world\n" * 20))),
     r"bad\.pt is not a readable voice file", 1),
    ("voice-empty", lambda ws: ws.offline(voice=str(ws.file("bad.pt", b""))), r"bad\.pt is not a readable voice", 1),
    ("voice-truncated-zip", lambda ws: ws.offline(voice=str(ws.file(
        "bad.pt", (ws.model / "voices" / "NATF0.pt").read_bytes()[:900]))), r"bad\.pt is not a readable voice", 1),
    ("voice-pickle-that-runs-code", lambda ws: ws.offline(voice=str(ws.file(
        "bad.pt", pickle.dumps({"embeddings": _RunsCode(), "cache": 1})))),
     r"bad\.pt was refused: .*could run code", 1),
    ("voice-other-model-width", lambda ws: ws.offline(voice=str(voice_file(ws, embeddings=lambda e: e[..., :32]))),
     r"bad\.pt was made for a model of width 32, this model has 64", 1),
    ("voice-nan-embeddings", lambda ws: ws.offline(voice=str(voice_file(
        ws, embeddings=lambda e: torch.full_like(e, float("nan"))))), r"bad\.pt: 'embeddings' contain NaN", 1),
    ("voice-unknown-name", lambda ws: ws.offline(voice="nobody"), r"unknown voice 'nobody'.*Available: NATF0", 1),
    ("voice-recording-1-hz", lambda ws: ws.offline(voice=str(ws.wav("v.wav", np.zeros(4000, np.int16), rate=1))),
     r"v\.wav declares a sample rate of 1 Hz", 1),
    # --- outputs: checked before the model runs, never the input, all or nothing ---
    ("output-text-is-a-folder", lambda ws: ws.offline(out_text=ws.root),
     r"--output-text .* is a folder: name a file inside it", 1),
    ("output-wav-is-a-folder", lambda ws: ws.offline(out_wav=ws.root), r"--output-wav .* is a folder", 1),
    ("output-is-the-input", lambda ws: ws.offline(out_wav=ws.input),
     r"--output-wav .*in\.wav is the input given with --input-wav: writing it would destroy your recording", 1),
    ("output-is-a-link-to-the-input", lambda ws: ws.offline(out_wav=_link(ws, "link.wav", ws.input)),
     r"link\.wav is the input given with --input-wav", 1),
    ("output-is-the-voice-recording", lambda ws: ws.offline(voice=str(ws.wav("voice.wav", speechlike(3.0))),
                                                            out_text=ws.root / "voice.wav"),
     r"--output-text .*voice\.wav is the input given with --voice", 1),
    ("output-text-is-output-wav", lambda ws: ws.offline(out_text=ws.out_wav),
     r"--output-text and --output-wav name the same file", 1),
    ("output-folder-missing", lambda ws: ws.offline(out_wav=ws.root / "nowhere" / "o.wav"),
     r"the folder .*nowhere does not exist", 1),
    ("output-folder-read-only", lambda ws: (ws.deny_create_in(ws.root / "ro"), ws.offline(
        out_wav=_mkdir(ws.root / "ro") / "o.wav"))[1], r"--output-wav: cannot write in .*ro \(Permission denied\)", 1),
    ("output-disk-too-full-to-start", lambda ws: (little_free_space(ws), ws.offline())[1],
     r"not enough free disk space in .* it needs about .* MB, 0\.0 MB are free", 1),
    ("output-disk-full-while-writing-the-text", lambda ws: (simulate_full_disk_on(ws, "out.json"), ws.offline())[1],
     r"could not write .*out\.json \(No space left on device\); nothing was replaced", 1),
    ("respond-output-is-an-input", lambda ws: ws.respond(out_wav=ws.input), r"is the input given with --input-wav", 1),
    # --- the model folder ---
    ("model-dir-missing", lambda ws: ws.offline(model=ws.root / "none"), r"model directory not found: .*none", 1),
    ("model-dir-incomplete", lambda ws: ws.offline(model=_mkdir(ws.root / "empty")),
     r"empty is not a complete model directory: missing model\.safetensors", 1),
    ("model-dir-unreadable", lambda ws: (ws.deny_stat_inside(ws.model), ws.offline())[1],
     r"cannot read the model directory .* \(Permission denied\): check its permissions", 1),
    ("weights-truncated", lambda ws: ws.offline(model=_truncate(ws.model_copy() / "model.safetensors")),
     r"model\.safetensors: file is truncated .* download it again", 1),
    ("weights-not-safetensors", lambda ws: ws.offline(model=_overwrite(ws.model_copy() / "model.safetensors",
                                                                       b"not a checkpoint" * 10)),
     r"model\.safetensors: not a safetensors file", 1),
    ("weights-one-nan", lambda ws: ws.offline(model=weights_with(ws, nan_one)),
     r"model\.safetensors: \S+ holds NaN or infinite values; the file is damaged: download it again", 1),
    ("weights-all-nan", lambda ws: ws.offline(model=weights_with(ws, nan_all)), r"holds NaN or infinite values", 1),
    ("weights-integers", lambda ws: ws.offline(model=weights_with(ws, as_int)),
     r"model\.safetensors stores weights as integers where the model needs floating-point values \(\S+ is I32\)", 1),
    ("config-not-json", lambda ws: ws.offline(model=_overwrite(ws.model_copy() / "ppx_config.json", b"{oops")),
     r"ppx_config\.json: not readable as JSON", 1),
    ("config-unknown-key", lambda ws: ws.offline(model=_overwrite(ws.model_copy() / "ppx_config.json",
                                                                  b'{"format": 1, "nonsense": 3}')),
     r"ppx_config\.json.*unknown key\(s\) 'nonsense'", 1),
    ("tokenizer-damaged", lambda ws: ws.offline(model=_overwrite(ws.model_copy() / "tokenizer_spm_32k_3.model",
                                                                 os.urandom(2000))),
     r"tokenizer_spm_32k_3\.model is not a SentencePiece model", 1),
    # --- the user's audio ---
    ("input-missing", lambda ws: ws.offline(input_wav=ws.root / "nope.wav"), r"Audio file .*nope\.wav not found", 1),
    ("input-not-audio", lambda ws: ws.offline(input_wav=ws.file("x.wav", b"RIFF" + os.urandom(300))),
     r"Cannot read .*x\.wav as audio", 1),
    ("input-empty", lambda ws: ws.offline(input_wav=ws.wav("e.wav", np.zeros(0, np.int16))),
     r"e\.wav contains no audio", 1),
    ("input-nan-samples", lambda ws: ws.offline(input_wav=ws.wav("n.wav", np.full(4800, np.nan, np.float32),
                                                                 subtype="FLOAT")),
     r"n\.wav contains NaN or infinite samples", 1),
    ("input-declares-1-hz", lambda ws: ws.offline(input_wav=ws.wav("hz.wav", np.zeros(100_000, np.int16), rate=1)),
     r"hz\.wav declares a sample rate of 1 Hz; recordings use 8000 to 192000 Hz", 1),
    ("input-21-minutes", lambda ws: ws.offline(input_wav=ws.wav("long.wav", np.zeros(8000 * 60 * 21, np.int16),
                                                                rate=8000, subtype="PCM_U8")),
     r"long\.wav is 21\.0 minutes long; at most 20\.0 minutes can be used here", 1),
    ("input-is-a-folder", lambda ws: ws.offline(input_wav=ws.root), r"is a directory; choose an audio file", 1),
    ("respond-input-declares-1-hz", lambda ws: ws.respond(input_wav=ws.wav("hz.wav", np.zeros(1000, np.int16),
                                                                           rate=1)),
     r"hz\.wav declares a sample rate of 1 Hz", 1),
    # --- persona prompt, sampling options ---
    ("prompt-not-utf8", lambda ws: ws.offline("--text-prompt", b"caf\xe9 \xff".decode("utf-8", "surrogateescape")),
     r"the persona prompt is not valid UTF-8 text: it holds the byte 0xe9 at position 4", 1),
    ("prompt-longer-than-the-context", lambda ws: ws.offline("--text-prompt", LONG_PROMPT),
     r"the prompts are longer than the model's context: .* but the model remembers 256 frames \(20\.5 s\)", 1),
    ("respond-prompt-longer-than-the-context", lambda ws: ws.respond("--text-prompt", LONG_PROMPT),
     r"the prompts are longer than the model's context", 1),
    ("temperature-nan", lambda ws: ws.offline("--temp-text", "nan"), r"a temperature is a number of 0 or more", 2),
    ("temperature-negative", lambda ws: ws.offline("--temp-audio", "-0.5"), r"a temperature is a number of 0", 2),
    ("temperature-infinite", lambda ws: ws.offline("--temp-audio", "inf"), r"a temperature is a number of 0", 2),
    ("top-k-negative", lambda ws: ws.offline("--topk-text", "-3"), r"top-k is 0 \(no limit\) or more", 2),
    ("seed-too-large", lambda ws: ws.offline("--seed", str(2**64)), r"a seed is between 0 and 2\*\*63", 2),
    ("respond-max-steps-zero", lambda ws: ws.respond("--max-steps", "0"), r"--max-steps must be between 1", 1),
    ("respond-offload-negative", lambda ws: ws.respond("--offload-layers", "-1"), r"cannot be negative", 2),
    # --- the app's data folder and its records ---
    ("data-folder-is-a-file", data_home_is_a_file, r"not-a-folder is a file\. Move that file away", 1),
    ("voices-folder-is-a-file", voices_folder_is_a_file, r"voices cannot be created: .*voices is a file", 1),
    ("downloads-json-garbage", lambda ws: downloads_json(ws, os.urandom(100)), r"no downloaded model found", 1),
    ("downloads-json-repos-a-list", lambda ws: downloads_json(ws, b'{"repos": [1, 2]}'), r"no downloaded model", 1),
    ("downloads-json-dir-a-number", lambda ws: downloads_json(
        ws, b'{"repos": {"nvidia/personaplex-7b-v1": {"model_dir": 5}}}'), r"no downloaded model found", 1),
    ("downloads-json-entry-a-string", lambda ws: downloads_json(
        ws, b'{"repos": {"nvidia/personaplex-7b-v1": "here"}}'), r"no downloaded model found", 1),
    # --- make-tiny-model, voices ---
    ("make-tiny-model-over-a-model", lambda ws: ["make-tiny-model", str(ws.model)],
     r"is not empty \(it holds model\.safetensors.*pass --force", 1),
    ("make-tiny-model-onto-a-file", lambda ws: ["make-tiny-model", str(ws.input)],
     r"in\.wav is a file, not a folder", 1),
    ("voices-add-bad-name", lambda ws: ["voices", "add", "../x", str(ws.input), "--model-dir", str(ws.model),
                                        "--yes-i-have-consent"], r"invalid voice name '\.\./x'", 1),
    ("voices-add-without-consent", lambda ws: ["voices", "add", "me", str(ws.input), "--model-dir", str(ws.model)],
     r"needs the speaker's consent: pass --yes-i-have-consent", 1),
    ("voices-add-too-short", lambda ws: ["voices", "add", "me", str(ws.input), "--model-dir", str(ws.model),
                                         "--yes-i-have-consent", "--device", "cpu"],
     r"the recording is too short \(2\.0 s\)", 1),
    ("voices-add-1-hz", lambda ws: ["voices", "add", "me", str(ws.wav("hz.wav", np.zeros(1000, np.int16), rate=1)),
                                    "--model-dir", str(ws.model), "--yes-i-have-consent", "--device", "cpu"],
     r"hz\.wav declares a sample rate of 1 Hz", 1),
    ("voices-remove-unknown", lambda ws: ["voices", "remove", "nobody"], r"no custom voice named 'nobody'", 1),
    # --- a hostile or broken Hub ---
    ("hub-null-commit", lambda ws: fake_hub(ws, commit=None), r"did not say which commit", 1),
    ("hub-commit-leaves-the-cache", lambda ws: fake_hub(ws, commit="../../../../"),
     r"answered with the commit '\.\./\.\./\.\./\.\./', which is not a valid name: nothing was written", 1),
    ("hub-no-etag", lambda ws: fake_hub(ws, headers={"model.safetensors": {"X-Linked-Etag": None, "ETag": None}}),
     r"sent no ETag for model\.safetensors", 1),
    ("hub-etag-leaves-the-cache", lambda ws: fake_hub(ws, headers={"model.safetensors": {
        "X-Linked-Etag": '"../../../../x"'}}), r"the etag of model\.safetensors '\.\./\.\./\.\./\.\./x'", 1),
]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _link(ws: Workspace, name: str, target: Path) -> Path:
    (ws.root / name).symlink_to(target)
    return ws.root / name


def _overwrite(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path.parent


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path.parent


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file (and link) under `roots` with a hash of its content; folders themselves are not
    files a run could damage."""
    out = {}
    for root in roots:
        if root.is_file():
            out[str(root)] = hashlib.sha1(root.read_bytes()).hexdigest()
            continue
        for dirpath, _, filenames in os.walk(root):
            for name in filenames:
                p = Path(dirpath) / name
                # os.path.islink uses lstat, which no simulated refusal replaces
                link = os.path.islink(p)
                out[str(p)] = "link:" + os.readlink(p) if link else hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse refusing an option value
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture
def ws(tmp_path, tiny_model_dir, monkeypatch):
    workspace = Workspace(_mkdir(tmp_path / "ws"), tiny_model_dir, monkeypatch)
    yield workspace
    workspace.sim.undo()
    for stop in workspace.cleanups:
        stop()


def _watched(ws: Workspace) -> list[Path]:
    return [ws.root, ws.model, Path(os.environ["PPX_DESKTOP_HOME"]).parent]


@pytest.mark.parametrize("setup, words, code", [pytest.param(s, w, c, id=i) for i, s, w, c in CASES])
def test_bad_input_gets_a_clear_error_and_changes_nothing(ws, capsys, setup, words, code):
    argv = setup(ws)
    before = snapshot(*_watched(ws))
    rc, out, err = run_cli(argv, capsys)
    ws.sim.undo()  # the simulated refusals end with the command (the snapshot reads files)
    after = snapshot(*_watched(ws))
    assert "Traceback" not in out + err and "unexpected error" not in err, err
    assert rc == code, f"exit code {rc}: {out}{err}"
    assert re.search(words, err), err
    if code == 1:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"ppx-desktop {argv[0]}: error: "), err
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert changed == [], f"files changed by a failed run: {changed}"


# --- inputs that can be used, where the user is told what was done ---------------------------


@pytest.mark.parametrize("name, audio, rate, subtype, said", [
    pytest.param("long.wav", speechlike(200.0), 8000, "PCM_U8",  # 4.8 M samples at 8 kHz: 10 minutes
                 ["used the first 12.3 s of the 10.0 minutes recording", "resampled it from 8000 Hz to 24000 Hz",
                  "it holds 8-bit samples"], id="10-minutes-8-bit"),
    pytest.param("hi.wav", np.repeat(speechlike(4.0), 4), 96000, "PCM_24",
                 ["resampled it from 96000 Hz to 24000 Hz"], id="96-kHz"),
])
def test_an_odd_voice_recording_is_used_and_what_was_done_is_said(ws, capsys, name, audio, rate, subtype, said):
    voice = ws.wav(name, audio, rate=rate, subtype=subtype)
    rc, out, err = run_cli(ws.offline(voice=str(voice)), capsys)
    assert rc == 0, err
    for words in said:
        assert f"note: voice prompt {name}: {words}" in out, out
    assert sf.info(str(ws.out_wav)).frames == sf.info(str(ws.input)).frames


def test_a_state_cache_that_does_not_fit_is_replaced_saying_so_once(ws, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file as load
    from safetensors.torch import save_file as save

    from ppx_desktop.paths import state_cache_dir

    assert run_cli(ws.respond(), capsys)[0] == 0
    for f in state_cache_dir().glob("*.safetensors"):  # loads fine, but from a model with other sizes
        tensors = load(str(f))
        tensors["k0"] = torch.cat([tensors["k0"], tensors["k0"]], dim=-1)
        with safe_open(str(f), "pt") as g:
            meta = g.metadata()
        save(tensors, str(f), metadata=meta)
    rc, out, err = run_cli(ws.respond(), capsys)
    assert rc == 0 and "Traceback" not in err, err
    assert out.count("did not fit this model") == 1 and "deleted, and the prompts ran again" in out
    rc, out, _ = run_cli(ws.respond(), capsys)
    assert rc == 0 and "did not fit" not in out and "(from cache)" in out


def test_a_good_run_changes_only_its_outputs(ws, capsys):
    before = snapshot(ws.root, ws.model)
    rc, out, err = run_cli(ws.offline(), capsys)
    assert rc == 0, err
    after = snapshot(ws.root, ws.model)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert changed == sorted([str(ws.out_json), str(ws.out_wav)])
    assert json.loads(ws.out_json.read_text()) and sf.info(str(ws.out_wav)).samplerate == SR
