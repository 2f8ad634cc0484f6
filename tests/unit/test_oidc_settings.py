"""The sign-in providers and the trial rule read from the environment."""

from __future__ import annotations

import pytest

from services.settings import ConfigError, load_settings


def settings(tmp_path, **values):
    return load_settings(env_file=None, DATA_DIR=str(tmp_path), **values)


def test_providers_come_from_oidc_providers_in_order(tmp_path):
    s = settings(tmp_path, OIDC_PROVIDERS="google, company", OIDC_GOOGLE_ISSUER="https://accounts.google.com",
                 OIDC_GOOGLE_CLIENT_ID="g", OIDC_GOOGLE_CLIENT_SECRET="gs", OIDC_COMPANY_ISSUER="https://sso.acme.test/",
                 OIDC_COMPANY_CLIENT_ID="c", OIDC_COMPANY_LABEL="ACME SSO")
    google, company = s.oidc_provider_configs()
    assert (google.name, google.label, google.client_secret) == ("google", "Google", "gs")
    assert (company.label, company.issuer, company.client_secret) == ("ACME SSO", "https://sso.acme.test", None)


def test_a_dotenv_file_names_providers_too(tmp_path):
    env = tmp_path / ".env"
    env.write_text("OIDC_PROVIDERS=corp\nOIDC_CORP_ISSUER=https://id.corp.test\nOIDC_CORP_CLIENT_ID=x\n")
    s = load_settings(env_file=env, DATA_DIR=str(tmp_path))
    assert [p.name for p in s.oidc_provider_configs()] == ["corp"]


@pytest.mark.parametrize(("values", "variable"), [
    ({"OIDC_PROVIDERS": "corp", "OIDC_CORP_CLIENT_ID": "x"}, "OIDC_CORP_ISSUER"),
    ({"OIDC_PROVIDERS": "corp", "OIDC_CORP_ISSUER": "https://id.corp.test"}, "OIDC_CORP_CLIENT_ID"),
    ({"OIDC_PROVIDERS": "corp", "OIDC_CORP_ISSUER": "http://id.corp.test", "OIDC_CORP_CLIENT_ID": "x"},
     "OIDC_CORP_ISSUER: must be an https:// URL"),
    ({"OIDC_PROVIDERS": "bad name"}, "OIDC_PROVIDERS"),
])
def test_a_wrong_provider_setting_stops_start_up_naming_the_variable(tmp_path, values, variable):
    with pytest.raises(ConfigError, match=variable):
        settings(tmp_path, **values)


def test_a_hugging_face_space_needs_no_other_set_up(tmp_path):
    s = settings(tmp_path, OAUTH_CLIENT_ID="hf-id", OAUTH_CLIENT_SECRET="hf-secret", OAUTH_SCOPES="openid profile",
                 OPENID_PROVIDER_URL="https://huggingface.co", SPACE_HOST="someone-studio.hf.space")
    [hf] = s.oidc_provider_configs()
    assert (hf.name, hf.label, hf.issuer) == ("huggingface", "Hugging Face", "https://huggingface.co")
    assert hf.redirect_uri == "https://someone-studio.hf.space/auth/oidc/huggingface/callback"
    assert hf.scope.split() == ["openid", "profile", "email"]


def test_the_trial_waits_for_verification_by_default_only_with_mail(tmp_path):
    assert not settings(tmp_path).trial_requires_verified_email
    assert settings(tmp_path, SMTP_HOST="mail.test").trial_requires_verified_email
    assert not settings(tmp_path, SMTP_HOST="mail.test", TRIAL_REQUIRES_VERIFIED_EMAIL="false").trial_requires_verified_email
    assert settings(tmp_path, TRIAL_REQUIRES_VERIFIED_EMAIL="true").trial_requires_verified_email
