"""The Generate tab's cost line, built in a real gr.Blocks and called as Gradio calls it, against a
real Studio, Entitlements and Billing (with the fake Stripe): it tells the user why a gated
resolution is closed to them, from what they really bought."""

from __future__ import annotations

from dataclasses import replace

import gradio as gr

from services.accounts import Accounts
from services.container import Services
from services.mailer import make_mailer
from ui import generate as generate_ui
from ui.common import Shell


def _gated(catalog):
    gates = {"4K": "purchase", "2K": "paid"}
    return replace(catalog, resolutions=tuple(replace(r, requires=gates.get(r.key)) for r in catalog.resolutions))


def _cost_line(rig):
    """cost_line(user_id, resolution) -> the Markdown text, as the tab's handler returns it."""
    settings = rig.studio.settings
    services = Services(settings=settings, db=rig.db, ledger=rig.ledger, catalog=rig.studio.catalog,
                        studio=rig.studio, pricing=rig.billing.pricing, billing=rig.billing,
                        entitlements=rig.entitlements,
                        accounts=Accounts(db=rig.db, ledger=rig.ledger, settings=settings,
                                          mailer=make_mailer(settings)))
    with gr.Blocks() as demo:
        generate_ui.build(services, Shell(services))
    handler = next(b.fn for b in demo.fns.values() if b.fn.__name__ == "cost_line")

    def line(user_id: int, resolution: str) -> str:
        text, _buy, _generate = handler(resolution, [], gr.Request(username=str(user_id)))
        return text

    return line


def test_the_cost_line_says_which_gate_closes_a_resolution(make_rig, catalog, fake_stripe):
    rig = make_rig(stripe=fake_stripe)
    rig.studio.catalog = rig.entitlements.catalog = _gated(catalog)
    line = _cost_line(rig)
    trial = rig.user(credits=100)
    buyer = rig.user(credits=0)
    rig.buy(buyer, "pack_100")
    admin = rig.user(credits=100, role="admin")

    assert "4K images need a plan or a credit pack" in line(trial, "4K")
    assert "2K images need a paid plan" in line(trial, "2K")
    assert "need" not in line(trial, "1K")  # an open resolution shows only its cost
    assert "need" not in line(buyer, "4K")  # a pack opens "purchase"…
    assert "2K images need a paid plan" in line(buyer, "2K")  # …but is not a plan
    assert "need" not in line(admin, "4K") and "need" not in line(admin, "2K")


def test_the_cost_line_adds_the_reference_surcharge(make_rig, catalog):
    rig = make_rig()
    rig.studio.catalog = rig.entitlements.catalog = replace(catalog, reference_surcharge=3)
    settings = rig.studio.settings
    services = Services(settings=settings, db=rig.db, ledger=rig.ledger, catalog=rig.studio.catalog,
                        studio=rig.studio, pricing=rig.billing.pricing, billing=rig.billing,
                        entitlements=rig.entitlements,
                        accounts=Accounts(db=rig.db, ledger=rig.ledger, settings=settings,
                                          mailer=make_mailer(settings)))
    with gr.Blocks() as demo:
        generate_ui.build(services, Shell(services))
    handler = next(b.fn for b in demo.fns.values() if b.fn.__name__ == "cost_line")
    uid = rig.user(credits=15)
    text, _buy, go = handler("1K", [{"kind": "upload"}, {"kind": "upload"}], gr.Request(username=str(uid)))
    assert "**16 credits** (10 + 2 reference images × 3)" in text and "Not enough credits" in text
    assert go.interactive is False
    text, _buy, go = handler("1K", [], gr.Request(username=str(uid)))
    assert "**10 credits**" in text and go.interactive is True
