"""Both languages through the served app: pages by Accept-Language and by the switch, the choice
kept across sign-in, refusals of /generate in the caller's language, the payment methods Checkout
receives, and the support QR on the pricing and payment pages."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from services.i18n import LANGUAGE_COOKIE
from tests.e2e.conftest import csrf_of, shop, sign_up

ZH = {"accept-language": "zh-CN,zh;q=0.9,en;q=0.8", "accept": "text/html"}
EN = {"accept-language": "en-US,en;q=0.9", "accept": "text/html"}


def test_pages_follow_accept_language(served_app):
    for path, english, chinese in [("/login", "Welcome back", "欢迎回来"), ("/signup", "Create your account", "创建账户"),
                                   ("/forgot", "Reset your password", "重置密码"), ("/pricing", "Credit packs", "点数包"),
                                   ("/terms", "Terms of use", "使用条款"), ("/", "Create images from a sentence",
                                                                           "一句话生成图片"),
                                   ("/api", "Everything the Generate tab does", "都可以用脚本完成")]:
        zh = httpx.get(served_app.url + path, headers=ZH)
        en = httpx.get(served_app.url + path, headers=EN)
        assert zh.status_code == en.status_code == 200, path
        assert chinese in zh.text and english not in zh.text, path
        assert english in en.text and chinese not in en.text, path
        assert '<html lang="zh-CN">' in zh.text and '<html lang="en">' in en.text
    pricing = httpx.get(served_app.url + "/pricing", headers=ZH).text
    assert "入门点数包" in pricing and "US$4.99" in pricing and "Starter pack" not in pricing


def test_form_refusals_are_in_the_page_s_language(served_app):
    client = served_app.client(follow_redirects=False, headers=ZH)
    page = client.get("/signup")
    r = client.post("/signup", data={"email": "short@example.com", "password": "short", "csrf": csrf_of(page)})
    assert r.status_code == 400 and "密码至少需要 8 个字符" in r.text and "Use a password" not in r.text
    page = client.get("/login")
    r = client.post("/login", data={"email": "nobody@example.com", "password": "whatever pass", "csrf": csrf_of(page)})
    assert r.status_code == 401 and "邮箱或密码不正确" in r.text
    r = client.post("/reset", data={"token": "nope", "password": "correct horse battery", "csrf": "bad"})
    assert r.status_code == 400 and "表单已过期" in r.text
    r = client.get("/verify-email", params={"token": "not-a-link"})
    assert r.status_code == 400 and "邮箱未验证" in r.text and "此验证链接无效" in r.text and "invalid" not in r.text
    r = client.get("/auth/oidc/nope/login")
    assert r.status_code == 404 and "本实例没有这个登录方式" in r.text and "no such" not in r.text


def test_the_switch_sets_a_cookie_that_beats_the_browser(served_app):
    client = served_app.client(follow_redirects=False, headers=EN)
    r = client.get("/language/zh-CN", params={"next": "/pricing"})
    assert r.status_code == 303 and r.headers["location"] == "/pricing"
    assert client.cookies.get(LANGUAGE_COOKIE) == "zh-CN"
    assert "点数包" in client.get("/pricing").text
    assert client.get("/language/en", params={"next": "https://evil.example/"}).headers["location"] == "/"
    assert "Credit packs" in client.get("/pricing").text
    # The switch's links are on the sign-in pages, pointing back to the page.
    assert 'href="/language/zh-CN?next=/login"' in client.get("/login").text


def test_the_choice_is_kept_on_the_account_and_comes_back_at_sign_in(served_app):
    email = f"lang-{uuid.uuid4().hex[:8]}@example.com"
    first = served_app.client(follow_redirects=False, headers=EN)
    first.get("/language/zh-CN")
    page = first.get("/signup")
    assert "创建账户" in page.text
    assert first.post("/signup", data={"email": email, "password": "correct horse battery",
                                       "csrf": csrf_of(page)}).status_code == 303
    assert served_app.services.accounts.get_user_by_email(email).language == "zh-CN"

    # Another browser, English by its header and without the cookie: signing in brings the choice back.
    second = served_app.client(follow_redirects=False, headers=EN)
    page = second.get("/login")
    assert "Welcome back" in page.text
    r = second.post("/login", data={"email": email, "password": "correct horse battery", "csrf": csrf_of(page)})
    assert r.status_code == 303 and second.cookies.get(LANGUAGE_COOKIE) == "zh-CN"
    assert "点数包" in second.get("/pricing").text

    # Switching while signed in is saved on the account.
    second.get("/language/en")
    assert served_app.services.accounts.get_user_by_email(email).language == "en"


def test_refusals_through_generate_come_back_in_the_callers_language(served_app):
    services = served_app.services
    user = services.accounts.create_user(email=f"zh-{uuid.uuid4().hex[:8]}@example.com",
                                         password="correct horse battery")
    _, key = services.accounts.create_api_key(user_id=user.id, name="e2e")
    before = services.ledger.balance(user.id).total
    zh = Client(served_app.url, headers={"Authorization": f"Bearer {key}", "Accept-Language": "zh-CN"},
                verbose=False)
    en = Client(served_app.url, headers={"Authorization": f"Bearer {key}"}, verbose=False)
    try:
        with pytest.raises(AppError, match="未知风格 “no such style”"):
            zh.predict("a cat", "no such style", "1:1", "1K", api_name="/generate")
        with pytest.raises(AppError, match="请输入提示词"):
            zh.predict("   ", "photographic", "1:1", "1K", api_name="/generate")
        with pytest.raises(AppError, match="最多 4000 个"):
            zh.predict("猫" * 4001, "photographic", "1:1", "1K", api_name="/generate")
        with pytest.raises(AppError, match="Unknown style “no such style”"):
            en.predict("a cat", "no such style", "1:1", "1K", api_name="/generate")
    finally:
        zh.close()
        en.close()
    assert services.ledger.balance(user.id).total == before


@pytest.fixture
def qr_image(tmp_path):
    path = tmp_path / "wecom.png"
    Image.new("RGB", (64, 64), "black").save(path)
    return path


def test_packs_get_the_local_methods_plans_only_card_and_support_is_on_the_money_pages(
        serve_app, database_url, fake_stripe, qr_image):
    app = shop(serve_app, database_url=database_url, stripe_url=fake_stripe.url, webhook_secret="whsec_i18n")
    app.settings.stripe_payment_methods = "card,alipay,wechat_pay"
    app.settings.support_qr_image = qr_image
    app.settings.support_hours = "9:00–18:00 (UTC+8)"
    email = f"pay-{uuid.uuid4().hex[:8]}@example.com"
    browser = sign_up(app, email)
    user = app.services.accounts.get_user_by_email(email)

    pack_url = app.services.billing.create_checkout(user=user, product="pack_100")
    pack = fake_stripe.requests_to("POST", "/v1/checkout/sessions")[-1].params
    assert pack["payment_method_types"] == ["card", "alipay", "wechat_pay"]
    assert pack["payment_method_options"] == {"wechat_pay": {"client": "web"}}
    app.services.billing.create_checkout(user=user, product="basic_monthly")
    plan = fake_stripe.requests_to("POST", "/v1/checkout/sessions")[-1].params
    assert plan["mode"] == "subscription" and plan["payment_method_types"] == ["card"]
    assert "payment_method_options" not in plan

    qr = httpx.get(app.url + "/support/qr")
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/png" and qr.content == qr_image.read_bytes()
    shown = re.compile(r'<img class="support-qr" src="/support/qr"')
    pricing = httpx.get(app.url + "/pricing", headers=ZH).text
    assert shown.search(pricing) and "支付宝" in pricing and "微信支付" in pricing and "9:00–18:00" in pricing
    assert shown.search(httpx.get(app.url + "/login", headers=ZH).text)  # the sign-in help
    cancel = browser.get("/billing/cancel", headers=ZH)
    assert cancel.status_code == 200 and shown.search(cancel.text) and "付款已取消" in cancel.text

    session = fake_stripe.complete_checkout(pack_url.rsplit("/", 1)[1])
    success = browser.get(f"/billing/success?session_id={session['id']}", headers=ZH)
    assert success.status_code == 200 and shown.search(success.text) and "已收到您的付款" in success.text
    assert app.services.ledger.balance(user.id).total >= 100

    # Without SUPPORT_QR_IMAGE nothing points at a missing picture.
    app.settings.support_qr_image = None
    assert "support-qr" not in httpx.get(app.url + "/pricing").text
    assert httpx.get(app.url + "/support/qr").status_code == 404


def test_a_generation_and_a_reference_refusal_through_the_api_come_back_in_chinese(served_app, tmp_path):
    from gradio_client import handle_file

    from tests import pictures

    services = served_app.services
    user = services.accounts.create_user(email=f"zh-api-{uuid.uuid4().hex[:8]}@example.com",
                                         password="correct horse battery")
    services.ledger.grant(user_id=user.id, amount=100, kind="admin", idempotency_key=f"zh-api:{user.id}")
    _, key = services.accounts.create_api_key(user_id=user.id, name="e2e")
    good, bad = tmp_path / "good.jpg", tmp_path / "anim.png"
    good.write_bytes(pictures.picture())
    bad.write_bytes(b"GIF89a" + bytes(200))
    zh = Client(served_app.url, headers={"Authorization": f"Bearer {key}", "Accept-Language": "zh-CN"},
                verbose=False)
    en = Client(served_app.url, headers={"Authorization": f"Bearer {key}"}, verbose=False)
    try:
        _, said, _ = zh.predict("雨中的灯塔", "photographic", "1:1", "1K", api_name="/generate")
        assert said.startswith("完成：") and "下载 PNG" in said and "Done" not in said
        _, said, _ = en.predict("a lighthouse", "photographic", "1:1", "1K", api_name="/generate")
        assert said.startswith("Done: ") and "[Download PNG](" in said
        before = services.ledger.balance(user.id).total
        with pytest.raises(AppError, match="anim.png：这是 GIF 图片；请上传 PNG、JPEG 或 WebP 图片。"):
            zh.predict("一只猫", "photographic", "1:1", "1K", [handle_file(str(good)), handle_file(str(bad))], None,
                       api_name="/edit")
        with pytest.raises(AppError, match="请至少添加一张参考图"):
            zh.predict("一只猫", "photographic", "1:1", "1K", [], None, api_name="/edit")
        with pytest.raises(AppError, match="anim.png: this is a GIF; upload a PNG, JPEG or WebP image."):
            en.predict("a cat", "photographic", "1:1", "1K", [handle_file(str(good)), handle_file(str(bad))], None,
                       api_name="/edit")
        assert services.ledger.balance(user.id).total == before
    finally:
        zh.close()
        en.close()


def test_team_refusals_come_back_in_the_page_s_language(serve_app):
    app = serve_app(SIGNUP_MODE="invite", ALLOWED_EMAIL_DOMAINS="example.com")

    def post(email: str, invite: str = "", headers=ZH) -> httpx.Response:
        client = app.client(follow_redirects=False, headers=headers)
        page = client.get("/signup" + (f"?invite={invite}" if invite else ""))
        return client.post("/signup", data={"email": email, "password": "correct horse battery",
                                            "csrf": csrf_of(page), "invite": invite})

    answer = post("x@example.com")
    assert answer.status_code == 403 and "本工作室仅限受邀注册。请向管理员索取邀请链接。" in answer.text
    assert "by invitation only" not in answer.text
    assert "This studio is open by invitation only" in post("x@example.com", headers=EN).text
    from services.admin import OPERATOR

    invite = app.services.admin.create_invite(actor=OPERATOR)
    answer = post("y@gmail.com", invite.token)
    assert answer.status_code == 403 and "仅限以下域名的邮箱注册：example.com。" in answer.text
    assert post("y@example.com", invite.token).status_code == 303
    answer = post("z@example.com", invite.token)
    assert answer.status_code == 403 and "此邀请已被使用。" in answer.text
    answer = post("z@example.com", "inv_not_a_real_one")
    assert answer.status_code == 403 and "此邀请链接无效。" in answer.text
