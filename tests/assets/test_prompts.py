"""Persona prompt presets (from the PersonaPlex prompting guide) and user-saved prompts."""

from __future__ import annotations

import pytest

from ppx_desktop.assets.prompts import PromptError, delete_user_prompt, list_prompts, presets, save_user_prompt
from ppx_desktop.paths import prompts_dir


def by_id(pid: str):
    return next(p for p in list_prompts() if p.id == pid)


def test_presets_render_the_published_wording():
    assert [p.id for p in presets()] == ["assistant", "customer-service", "casual", "casual-topic"]
    assert by_id("assistant").render() == ("You are a wise and friendly teacher. Answer questions or provide "
                                          "advice in a clear and engaging way.")
    cs = by_id("customer-service")
    assert cs.render(cs.defaults()) == (
        "You work for CitySan Services which is a waste management and your name is Ayelen Lucero. "
        "Information: Verify customer name Omar Torres. Current schedule: every other week. Upcoming pickup: "
        "April 12th. Compost bin service available for $8/month add-on.")
    assert by_id("casual-topic").render({"topic": "career changes"}) == (
        "You enjoy having a good conversation. Have a casual discussion about career changes.")


def test_missing_fields_are_named():
    cs = by_id("customer-service")
    with pytest.raises(PromptError, match="needs: Company, Agent's name"):
        cs.render({**cs.defaults(), "company": " ", "agent_name": ""})


def test_user_prompts_are_saved_listed_and_deleted():
    save_user_prompt("pirate", "You are a pirate {not a field}.")
    mine = by_id("user:pirate")
    assert mine.user and mine.render() == "You are a pirate {not a field}."
    assert (prompts_dir() / "pirate.txt").read_text(encoding="utf-8") == "You are a pirate {not a field}.\n"
    assert list_prompts()[-1] == mine
    with pytest.raises(PromptError, match="already exists"):
        save_user_prompt("pirate", "other", overwrite=False)
    with pytest.raises(PromptError, match="invalid prompt name"):
        save_user_prompt("../escape", "x")
    with pytest.raises(PromptError, match="empty"):
        save_user_prompt("blank", "   ")
    delete_user_prompt("pirate")
    assert all(not p.user for p in list_prompts())
    with pytest.raises(PromptError, match="no saved prompt"):
        delete_user_prompt("pirate")
