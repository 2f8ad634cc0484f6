import asyncio

import pytest

from services.moderation import LocalBlocklist, OpenAIModerator, make_moderator
from services.settings import load_settings


@pytest.mark.parametrize("text", ["child porn", "CHILD-PORN please", "some Lolicon art", "nude   children!",
                                  "ｃｓａｍ", "revenge porn of my ex"])
def test_blocklist_catches_folded_variants(text):
    verdict = asyncio.run(LocalBlocklist().check(text=text))
    assert verdict.flagged and verdict.source == "blocklist" and verdict.categories


@pytest.mark.parametrize("text", ["a childhood portrait in a park", "children playing football", "a porn star's "
                                  "autobiography cover, text only", "cspam filter diagram", ""])
def test_blocklist_leaves_innocent_prompts_alone(text):
    assert not LocalBlocklist().verdict(text).flagged


def test_moderator_selection(tmp_path):
    assert isinstance(make_moderator(load_settings(env_file=None, DATA_DIR=str(tmp_path), OPENAI_API_KEY=None)), LocalBlocklist)
    keyed = make_moderator(load_settings(env_file=None, DATA_DIR=str(tmp_path), OPENAI_API_KEY="sk-x", IMAGE_PROVIDER="offline"))
    assert isinstance(keyed, OpenAIModerator)  # a key means every prompt is checked, whichever engine
