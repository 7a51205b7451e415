"""Secret values of plugin settings and secret-looking variables never reach forwarded text."""

from __future__ import annotations

from flx_meltano.application.secrets import MASK, Redactor, setting_env_var
from flx_meltano.domain.plugins import Plugin, PluginType, Setting


def _plugins():
    tap = Plugin(
        "tap-shop",
        PluginType.EXTRACTOR,
        namespace="tap_shop",
        settings=(Setting("api_key", secret=True), Setting("start_date")),
        config={"api_key": "literal-key-123", "start_date": "2024-01-01"},
    )
    target = Plugin(
        "target-pg",
        PluginType.LOADER,
        namespace="target_pg",
        settings=(Setting("sqlalchemy_url", secret=True),),
        config={"sqlalchemy_url": "$WAREHOUSE_URL"},
    )
    return tap, target


def test_meltano_env_var_names():
    tap, _ = _plugins()
    assert setting_env_var(tap, "api_key") == "TAP_SHOP_API_KEY"


def test_literal_env_and_url_password_secrets_are_masked(monkeypatch):
    monkeypatch.delenv("TAP_SHOP_API_KEY", raising=False)
    env = {
        "TARGET_PG_SQLALCHEMY_URL": "postgresql://loader:pg-pass-42@db/warehouse",
        "SOME_TOKEN": "tok-abcdef",
        "FLX_WAREHOUSE_PASSWORD": "x",  # too short to mask safely
    }
    redact = Redactor.for_plugins(_plugins(), env)
    line = (
        "connecting with literal-key-123 to postgresql://loader:pg-pass-42@db/warehouse "
        "(password pg-pass-42, token tok-abcdef), start 2024-01-01, x marks"
    )
    masked = redact(line)
    for secret in ("literal-key-123", "pg-pass-42", "tok-abcdef"):
        assert secret not in masked
    assert MASK in masked
    assert "2024-01-01" in masked  # ordinary settings stay
    assert masked.endswith("x marks")


def test_nothing_to_hide_leaves_text_alone():
    redact = Redactor.for_plugins([], {})
    assert redact("Beginning sync of 'orders'") == "Beginning sync of 'orders'"
