"""The Gradio per-call costs taken away (ui/gradio_tuning.py): sessions build a block's config only
when it is read, to the same value the eager constructor built; a missing matplotlib is looked up
once, not twice per event; and the queue keeps no growing per-event analytics. (bench/load.py measures what they save; every
e2e test runs with them installed.)"""

from __future__ import annotations

import importlib.util

import pytest
from gradio.state_holder import SessionState

from tests.e2e.test_hardening_guards import api_user, call
from ui import build_ui
from ui.gradio_tuning import ANALYTICS_KEPT, LazyConfigs, lazy_session_configs, no_matplotlib_lookups


@pytest.fixture
def blocks(serve_app):
    """The real UI (create_app has installed the tuning)."""
    return build_ui(serve_app().services)


def _eager(blocks) -> dict:
    config = SessionState(blocks).blocks_config
    return {k: config.config_for_block(k, [], v) for k, v in config.blocks.items() if k in blocks.blocks}


def test_lazy_configs_equal_the_eager_ones_for_the_real_ui(blocks):
    assert lazy_session_configs()
    state = SessionState(blocks)
    assert isinstance(state.config_values, LazyConfigs)
    assert dict.__len__(state.config_values) == 0, "nothing is built before it is read"
    expected = _eager(blocks)
    assert len(expected) > 50
    assert len(state.config_values) == len(expected)
    first = min(expected)
    assert state.config_values[first] == expected[first]
    assert dict.__len__(state.config_values) == 1, "reading one block builds one config"
    assert dict(state.config_values.items()) == expected
    assert list(state.components) == [c for c in expected.values() if c]


def test_an_updated_block_keeps_its_updated_config(blocks):
    state = SessionState(blocks)
    key = next(k for k, b in blocks.blocks.items() if type(b).__name__ == "Markdown")
    state._update_value_in_config(key, "**changed**")
    assert state.config_values[key]["props"]["value"] == "**changed**"
    assert dict(state.config_values.items())[key]["props"]["value"] == "**changed**"
    assert key in state.config_values
    assert -1 not in state.config_values and state.config_values.get(-1) is None
    with pytest.raises(KeyError):
        state.config_values[-1]


def test_a_missing_matplotlib_is_recorded_once_and_an_installed_one_left_alone():
    installed = importlib.util.find_spec("matplotlib") is not None
    no_matplotlib_lookups()
    if installed:
        importlib.import_module("matplotlib")  # still importable: nothing recorded
    else:
        with pytest.raises(ImportError):
            importlib.import_module("matplotlib")


def test_the_queue_keeps_no_growing_event_analytics(serve_app):
    """Gradio's default: a pandas summary of up to 10,000 past events rebuilt after every event
    (for the /monitoring dashboard the app turns off), so each call cost more the longer the
    server ran. Served calls leave the summary unbuilt and the records bounded."""
    app = serve_app()
    queue = app.server.config.app.state.blocks._queue
    _, headers = api_user(app)
    with app.client(headers=headers) as http:
        for _ in range(ANALYTICS_KEPT + 8):
            assert call(http, "balance", [])[0] == 40
    assert queue.events_recorded >= ANALYTICS_KEPT + 8, "the calls went through this queue"
    assert len(queue.event_analytics) <= ANALYTICS_KEPT
    assert queue.cached_event_analytics_summary == {"functions": {}}, "no summary was built"
