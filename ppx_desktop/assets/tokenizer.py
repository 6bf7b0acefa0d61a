"""Text tokenizer: a thin, error-friendly wrapper around a SentencePiece model.

PersonaPlex uses the SentencePiece model ``tokenizer_spm_32k_3.model``. Ids 0..3 are special to
the language model: 3 is text padding ("PAD") and 0 marks the end of padding ("EPAD"). Prompts
are encoded with plain ``encode`` (no BOS/EOS).

``train_tiny_tokenizer`` builds a small real SentencePiece model with the same special-id layout
(unk=0, bos=1, eos=2, pad=3) for tests and for the tiny development model.
"""

from __future__ import annotations

import io
import os
import random
import secrets
import typing as tp
from pathlib import Path

import sentencepiece

__all__ = [
    "SYSTEM_TAG",
    "TextTokenizer",
    "TokenizerError",
    "train_tiny_tokenizer",
    "wrap_system_prompt",
]

SYSTEM_TAG = "<system>"
_SPACE_MARK = "\u2581"  # SentencePiece's word-boundary marker "▁"
EPAD_ID = 0
PAD_ID = 3


class TokenizerError(ValueError):
    """The text tokenizer file is missing or unusable (the message names the file), or a text
    cannot be encoded (the message says why)."""


def wrap_system_prompt(text: str) -> str:
    """Surround a persona prompt with ``<system>`` tags, as the model was trained to see it.

    Leading and trailing whitespace is removed. A prompt that already starts and ends with the tag
    is kept as is. An empty (or all-whitespace) prompt gives ``""``: no text prompt at all.
    """
    cleaned = text.strip()
    if not cleaned:
        return ""
    if cleaned.startswith(SYSTEM_TAG) and cleaned.endswith(SYSTEM_TAG):
        return cleaned
    return f"{SYSTEM_TAG} {cleaned} {SYSTEM_TAG}"


def _check_unicode(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = ord(text[e.start])
        byte = f"the byte 0x{bad - 0xDC00:02x}" if 0xDC80 <= bad <= 0xDCFF else f"the character U+{bad:04X}"
        raise TokenizerError(f"{what} is not valid UTF-8 text: it holds {byte} at position {e.start + 1}. Save or "
                             "type it as UTF-8") from None


class TextTokenizer:
    """A loaded SentencePiece model. Build it with :meth:`load` (or from a processor)."""

    def __init__(self, processor: sentencepiece.SentencePieceProcessor, path: Path | None = None):
        self._sp = processor
        self.path = path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TextTokenizer:
        """Load a SentencePiece ``.model`` file.

        Raises :class:`TokenizerError` if the file does not exist or is not a SentencePiece model.
        """
        p = Path(path)
        if not p.is_file():
            what = "is a directory, not a file" if p.is_dir() else "not found"
            raise TokenizerError(
                f"Text tokenizer {p} {what}; download the model with `ppx-desktop download` "
                "or pass --model-dir"
            )
        try:
            data = p.read_bytes()
        except OSError as e:
            raise TokenizerError(f"Cannot read the text tokenizer {p}: {e}") from e
        sp = sentencepiece.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(data)
        except Exception as e:  # sentencepiece raises RuntimeError/OSError with a terse message
            raise TokenizerError(
                f"{p} is not a SentencePiece model ({e}); the model directory may be damaged, "
                "download it again with `ppx-desktop download`"
            ) from e
        if sp.get_piece_size() <= PAD_ID:
            raise TokenizerError(f"{p} has only {sp.get_piece_size()} pieces; ids 0..3 must exist")
        return cls(sp, p)

    @property
    def vocab_size(self) -> int:
        """Number of pieces (ids are ``0 .. vocab_size - 1``)."""
        return int(self._sp.get_piece_size())

    @property
    def eos_id(self) -> int:
        """The end-of-sentence id the model file declares (2 in Kyutai's tokenizers; -1 if none)."""
        return int(self._sp.eos_id())

    def encode(self, text: str, what: str = "the text") -> list[int]:
        """Plain SentencePiece ids for ``text`` (no BOS/EOS).

        Text that is not valid Unicode (bytes that were not UTF-8 arrive from a command line or a
        file as lone surrogates) is refused with a clear error naming ``what`` rather than
        SentencePiece's.
        """
        _check_unicode(text, what)
        return [int(i) for i in self._sp.encode(text)]

    def encode_system_prompt(self, text: str) -> list[int]:
        """Ids of the ``<system>``-wrapped persona prompt; ``[]`` for an empty prompt.

        The reference crashes on an empty prompt; here it simply means zero text-prompt steps.
        Note: the reference only checks ``len(text) > 0`` before stripping, so for an all-whitespace
        prompt it would encode ``"<system>  <system>"``; we treat that as empty too.
        """
        _check_unicode(text, "the persona prompt")
        wrapped = wrap_system_prompt(text)
        return self.encode(wrapped) if wrapped else []

    def decode(self, ids: tp.Iterable[int]) -> str:
        """Plain SentencePiece decoding of ``ids`` (special ids are dropped by SentencePiece)."""
        return str(self._sp.decode([int(i) for i in ids]))

    def id_to_piece(self, token_id: int) -> str:
        """The raw piece string stored for ``token_id``."""
        self._check_id(token_id)
        return str(self._sp.id_to_piece(int(token_id)))

    def piece_text(self, token_id: int) -> str:
        """Display string of a generated text token, as the reference's offline JSON writes it.

        0 -> ``"EPAD"``, 3 -> ``"PAD"``; every other id (including 1 and 2) is its piece with each
        ``"▁"`` replaced by a space.
        """
        token_id = int(token_id)
        if token_id == EPAD_ID:
            return "EPAD"
        if token_id == PAD_ID:
            return "PAD"
        return self.id_to_piece(token_id).replace(_SPACE_MARK, " ")

    def _check_id(self, token_id: int) -> None:
        if not 0 <= int(token_id) < self.vocab_size:
            raise TokenizerError(f"Text token id {token_id} is outside the vocabulary (size {self.vocab_size})")

    def __repr__(self) -> str:
        return f"TextTokenizer(path={str(self.path)!r}, vocab_size={self.vocab_size})"


# --------------------------------------------------------------------------------------------
# Tiny tokenizer for tests and the tiny development model.

_NAMES = [
    "Jane", "Alex", "Maria", "Omar", "Lena", "Victor", "Priya", "Sam", "Noah", "Chloe", "Ravi", "Emma",
]
_ROLES = [
    "a wise and friendly teacher", "a helpful customer service agent", "a patient tutor",
    "a cheerful travel guide", "a calm doctor", "a curious science journalist", "a kind librarian",
    "a bank assistant", "a hotel receptionist", "a fitness coach", "a chef who loves cooking",
    "a software engineer", "an astronaut", "a museum guide",
]
_TOPICS = [
    "technology", "music", "the weather", "cooking", "travel", "history", "science", "books",
    "sports", "movies", "gardening", "space", "animals", "health", "money", "the ocean",
]
_TRAITS = [
    "You enjoy having a good conversation.", "You speak clearly and kindly.", "You like to ask questions.",
    "You are calm and patient.", "You love telling short stories.", "You always answer with care.",
    "You are honest and direct.", "You have a good sense of humor.",
]
_SENTENCES = [
    "You are a wise and friendly teacher. Answer questions or provide advice in a clear and engaging way.",
    "Hello, how are you doing today?",
    "I am fine, thank you. What would you like to talk about?",
    "Can you tell me more about that?",
    "That sounds really interesting!",
    "Yes, of course. Let me think about it for a moment.",
    "No, I do not think so.",
    "What time is it right now?",
    "It is a beautiful day, isn't it?",
    "The quick brown fox jumps over the lazy dog.",
    "Please call me back tomorrow morning at nine o'clock.",
    "Thank you very much for your help.",
    "Goodbye, and have a wonderful evening!",
    "My order number is 4 5 6 7 8, can you check it?",
    "We have 3 rooms available for 2 nights.",
    "Why is the sky blue and why is the sea salty?",
    "Okay, great. Let's get started.",
    "Sorry, I didn't quite catch that. Could you say it again?",
]
def _words(text: str) -> list[str]:
    return text.split()


_NOUNS = _words(
    "time year people way day man woman child world life hand part place case week company system program "
    "question work government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father power hour "
    "game line end member law car city community name president team minute idea kid body information "
    "school face others level office door health person art war history party result change morning "
    "reason research girl guy moment air teacher force education garden kitchen window table phone letter "
    "music computer river mountain island forest planet engine bridge market doctor student ticket flight"
)
_VERBS = _words(
    "know take see come think look want give use find tell ask work seem feel try leave call need become "
    "put mean keep let begin show hear play run move like live believe hold bring happen write provide sit "
    "stand lose pay meet include continue learn change lead understand watch follow stop create speak read "
    "spend grow open walk win offer remember love consider appear buy wait serve die send expect build stay "
    "fall cut reach kill remain suggest raise pass sell require report decide explain develop carry break"
)
_ADJECTIVES = _words(
    "good new first last long great little own other old right big high different small large next early "
    "young important few public bad same able late hard major better economic strong possible whole free "
    "military true federal international full special easy clear recent certain personal open red "
    "difficult available likely short single medical current wrong private past foreign fine common poor "
    "natural significant similar hot dead central happy serious ready simple left physical general "
    "environmental financial blue democratic dark various entire close legal religious cold final main "
    "green nice huge popular traditional cultural quiet bright gentle warm friendly wise curious"
)
_TEMPLATES = [
    "{sys} You are {role}. Your name is {name}. {trait} {sys}",
    "{sys} You enjoy having a good conversation. Have a deep conversation about {topic}. Your name is {name}. {sys}",
    "You are {role}. {trait}",
    "Your name is {name} and you work as {role}.",
    "Let's talk about {topic} today.",
    "{name} asked me a question about {topic}.",
    "Do you know anything about {topic}, {name}?",
    "I really like {topic}, and I think {name} does too.",
    "{name} is {role} and knows a lot about {topic}.",
    "The {adj} {noun} will {verb} the {noun2} before the {adj2} {noun3}.",
    "Did you {verb} a {adj} {noun} last {noun2}?",
    "We should {verb} the {noun} and {verb2} a {adj} {noun2}.",
    "Every {noun} wants to {verb} something {adj}.",
    "I {verb} that {name} has a {adj} {noun} at home.",
    "Why would anyone {verb} the {adj} {noun}?",
]


def _tiny_corpus(seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = list(_SENTENCES) + list(_TRAITS)
    for i in range(600):
        template = _TEMPLATES[i % len(_TEMPLATES)]
        lines.append(
            template.format(
                sys=SYSTEM_TAG,
                role=rng.choice(_ROLES),
                name=rng.choice(_NAMES),
                trait=rng.choice(_TRAITS),
                topic=rng.choice(_TOPICS),
                adj=rng.choice(_ADJECTIVES),
                adj2=rng.choice(_ADJECTIVES),
                noun=rng.choice(_NOUNS),
                noun2=rng.choice(_NOUNS),
                noun3=rng.choice(_NOUNS),
                verb=rng.choice(_VERBS),
                verb2=rng.choice(_VERBS),
            )
        )
    # Every word of the lists once, so the vocabulary does not depend on the draws above.
    for words in (_NOUNS, _VERBS, _ADJECTIVES):
        for k in range(0, len(words), 12):
            lines.append(" ".join(words[k : k + 12]).capitalize() + ".")
    rng.shuffle(lines)
    return lines


def train_tiny_tokenizer(out_path: str | os.PathLike[str], vocab_size: int = 256, seed: int = 0) -> Path:
    """Train a small real SentencePiece (unigram) model and write it to ``out_path``.

    The corpus is built in: a few hundred English sentences, persona prompts among them. Ids are
    laid out like the real tokenizer's: ``<unk>``=0, ``<s>``=1, ``</s>``=2, ``<pad>``=3, and
    ``<system>`` is a user-defined symbol (id 4), so it always encodes to one piece. The result is
    deterministic for given arguments (same bytes). ``vocab_size`` must hold every character of
    the corpus plus the special pieces (at least 67) and cannot exceed what the small corpus supports
    (about 550); the default 256 is meant as the tiny LM's text card. Characters outside the corpus
    (e.g. accented letters) encode to ``<unk>`` = 0. Raises :class:`TokenizerError` on failure.
    """
    out = Path(out_path)
    buf = io.BytesIO()
    # The trainer's own randomness (if any) is seeded globally in SentencePiece.
    sentencepiece.set_random_generator_seed(int(seed))
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(_tiny_corpus(seed)),
            model_writer=buf,
            model_type="unigram",
            vocab_size=int(vocab_size),
            character_coverage=1.0,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=3,
            user_defined_symbols=[SYSTEM_TAG],
            num_threads=1,
            shuffle_input_sentence=False,
            input_sentence_size=0,
            minloglevel=2,
        )
    except Exception as e:  # RuntimeError from the trainer, e.g. "Vocabulary size too high"
        raise TokenizerError(f"Cannot train a tiny tokenizer with vocab_size={vocab_size}: {e}") from e
    data = buf.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
