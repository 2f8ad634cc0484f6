import stat

import pytest

from services.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("DATA_DIR", "DATABASE_URL", "SECRET_KEY", "TRIAL_CREDITS", "PUBLIC_URL", "OPENAI_API_KEY",
                 "IMAGE_PROVIDER", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(env_file=None)
    assert s.trial_credits == 60 and s.server_name == "127.0.0.1" and s.server_port == 7860
    assert s.resolved_database_url.startswith("sqlite:///") and s.resolved_database_url.endswith("studio.db")
    assert s.image_model == "gpt-image-2" and not s.use_openai and s.stripe_secret_key is None
    assert s.queue_concurrency >= 32


def test_environment_wins_over_dotenv(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text(f"TRIAL_CREDITS=7\nDATA_DIR={tmp_path}/d\nIMAGE_MODEL=gpt-image-1.5\n")
    monkeypatch.setenv("TRIAL_CREDITS", "9")
    s = load_settings(env_file=env_file)
    assert s.trial_credits == 9 and s.image_model == "gpt-image-1.5" and (tmp_path / "d").is_dir()


@pytest.mark.parametrize("name,value", [("TRIAL_CREDITS", "-1"), ("GRADIO_SERVER_PORT", "99999"),
                                        ("PUBLIC_URL", "example.com"), ("DATABASE_URL", "mysql://x"),
                                        ("IMAGE_PROVIDER", "dalle")])
def test_invalid_value_names_the_variable(tmp_path, monkeypatch, name, value):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings(env_file=None)
    assert name in str(err.value) and "\n" not in str(err.value)


def test_secret_key_generated_once_and_private(tmp_path):
    s = load_settings(env_file=None, DATA_DIR=str(tmp_path))
    key = s.ensure_secret_key()
    assert len(key) >= 32
    assert stat.S_IMODE(s.secret_key_path.stat().st_mode) == 0o600
    again = load_settings(env_file=None, DATA_DIR=str(tmp_path))
    assert again.ensure_secret_key() == key


def test_https_public_url_makes_cookies_secure(tmp_path):
    assert load_settings(env_file=None, DATA_DIR=str(tmp_path), PUBLIC_URL="https://s.example.com/").secure_cookies
    assert not load_settings(env_file=None, DATA_DIR=str(tmp_path), PUBLIC_URL="http://localhost").secure_cookies
