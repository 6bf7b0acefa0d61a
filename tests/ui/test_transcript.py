"""The transcript tells the history as it happened: voices and personas per turn, dividers, turn
numbers per conversation, both sides of a live session in order, only spoken words, no empty
bubbles; and the view shows every word in a narrow window without 130-character lines in a wide one."""

from __future__ import annotations

import json

import numpy as np
from PySide6.QtWidgets import QLabel

from ppx_desktop.ui.transcript_model import Transcript
from ppx_desktop.ui.widgets.transcript_view import LINE_CHARS, TranscriptView

SECOND = np.zeros(24_000, np.float32)


def turn(t: Transcript, turn_id: int, words: str, end: str = "agent_finished") -> None:
    t.add_user(turn_id, SECOND, "ptt")
    for piece in words.split(" "):
        t.add_agent_text(turn_id, " " + piece, "ptt")
    t.finish_agent(turn_id, "", 1.0, end, "ptt")


def test_saved_files_name_every_voice_and_persona_with_dividers(tmp_path):
    t = Transcript()
    t.set_persona("NATF0", "You are a teacher.")
    turn(t, 1, "Hello there")
    t.set_persona("VARM1", "You are a teacher.")
    turn(t, 2, "Good day")
    t.set_persona("VARM1", "You are a pirate.")
    turn(t, 3, "Ahoy")
    md, js = t.save(tmp_path)
    data = json.loads(js.read_text())
    assert data["voices"] == ["NATF0", "VARM1"] and data["personas"] == ["You are a teacher.", "You are a pirate."]
    spoken = [(e["turn"], e["voice"], e["persona"]) for e in data["turns"] if e["speaker"] == "agent"]
    assert spoken == [(1, "NATF0", "You are a teacher."), (2, "VARM1", "You are a teacher."),
                      (3, "VARM1", "You are a pirate.")]
    notes = [e["text"] for e in data["turns"] if e["speaker"] == "note"]
    assert notes == ["Now voice VARM1. The agent starts afresh.",
                     "Now persona: You are a pirate.. The agent starts afresh."]
    text = md.read_text()
    assert "- Voices: NATF0, VARM1" in text and "- Persona: You are a teacher." in text
    assert "- Persona: You are a pirate." in text and text.count("---") == 2


def test_the_same_persona_again_leaves_no_divider():
    t = Transcript()
    t.set_persona("NATF0", "p")
    turn(t, 1, "hi")
    assert t.set_persona("NATF0", "p") is None
    assert [e.speaker for e in t.entries] == ["user", "agent"]


def test_turn_numbers_start_again_after_new_conversation():
    t = Transcript()
    turn(t, 1, "a")
    turn(t, 2, "b")
    t.clear()
    turn(t, 3, "c")  # the controller's ids carry on; the numbers the user reads do not
    assert [(e.speaker, e.number) for e in t.entries] == [("user", 1), ("agent", 1)]
    assert json.loads(t.to_json())["turns"][0]["turn"] == 1


def test_live_duplex_lists_the_user_before_the_agent():
    t = Transcript()
    t.add_user(5, None, "duplex")  # the session starts: both sides are live
    t.agent(5, "duplex")
    t.add_agent_text(5, "Hi", "duplex")
    t.add_user(5, np.zeros(48_000, np.float32), "duplex", duration_s=2.0)  # the user's audio at the end
    assert [(e.speaker, e.number) for e in t.entries] == [("user", 1), ("agent", 1)]
    assert t.entries[0].duration_s == 2.0 and t.entries[0].audio is not None
    # Also when the agent's entry came first (no live placeholder).
    t2 = Transcript()
    t2.agent(1, "duplex")
    t2.add_user(1, SECOND, "duplex")
    assert [e.speaker for e in t2.entries] == ["user", "agent"]


def test_control_pieces_never_show_as_words():
    t = Transcript()
    t.add_user(1, SECOND, "ptt")
    for piece in ["<s>", " Hello", "<system>", " there", "</s>", "!"]:
        t.add_agent_text(1, piece)
    t.finish_agent(1, "<s> Hello<system> there</s>!", 1.0, "agent_finished")
    assert t.entries[1].shown_text == "Hello there!"
    assert "<" not in t.to_markdown() and "<" not in json.dumps(json.loads(t.to_json())["turns"])


def test_a_cancelled_answer_before_a_word_leaves_no_bubble():
    t = Transcript()
    t.add_user(1, SECOND, "ptt")
    t.agent(1, "ptt")  # created early (a frame came) but no word was said
    assert t.finish_agent(1, "", 0.0, "cancelled") is None
    assert [e.speaker for e in t.entries] == ["user"]
    turn(t, 2, "half a", end="cancelled")  # words were said: kept, marked
    assert "half a (interrupted)" in t.to_markdown()


def _clipped(view: TranscriptView) -> list[str]:
    """Labels of bubbles whose text does not fit (cut words or lines)."""
    bad = []
    for bubble in view.entry_widgets():
        for label in bubble.findChildren(QLabel):
            if label.height() < label.heightForWidth(label.width()) or label.width() < 10:
                bad.append(label.text()[:30])
            right = label.mapTo(view.scroll.viewport(), label.rect().topRight()).x()
            if right > view.scroll.viewport().width():
                bad.append("beyond the edge: " + label.text()[:30])
    return bad


def test_bubbles_fit_a_narrow_window_and_stay_readable_in_a_wide_one(qtbot):
    t = Transcript()
    view = TranscriptView(t)
    qtbot.addWidget(view)
    long_words = "Supercalifragilistic " * 3 + "the quick brown fox jumps over the lazy dog " * 12
    turn(t, 1, long_words.strip())
    t.add_user(2, SECOND, "handsfree")
    view.sync()
    for width in (340, 1900):
        view.resize(width, 400)
        view.show()
        qtbot.waitUntil(lambda w=width: view.scroll.viewport().width() <= w and view.entry_widgets()[1].isVisible())
        qtbot.wait(1)  # let the layout settle after the resize (one event loop pass)
        assert _clipped(view) == [], width
        assert view.scroll.horizontalScrollBar().maximum() == 0
    agent = view.entry_widgets()[1]
    chars = agent.body.width() / agent.body.fontMetrics().averageCharWidth()
    assert chars <= LINE_CHARS + 2  # at 1900 px a line still holds at most about 66 characters
    user = view.entry_widgets()[2]
    viewport = view.scroll.viewport()
    assert user.mapTo(viewport, user.rect().topRight()).x() > viewport.width() - 30  # the user on the right
    assert agent.mapTo(viewport, agent.rect().topLeft()).x() < 30  # the agent on the left
