"""Files flx writes that can hold secrets are readable by their owner only."""

from __future__ import annotations

import stat

from flx_meltano.application.database_admin import write_dotenv


def test_the_dotenv_with_the_warehouse_password_is_0600_and_keeps_other_lines(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("OTHER='kept'\nFLX_WAREHOUSE_PASSWORD='old'\n")
    dotenv.chmod(0o644)
    (tmp_path / ".env.tmp").write_text("stale")  # left by an interrupted write, world-readable
    write_dotenv(dotenv, {"FLX_WAREHOUSE_PASSWORD": "s3cret"})
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
    assert dotenv.read_text().splitlines() == ["OTHER='kept'", "FLX_WAREHOUSE_PASSWORD='s3cret'"]
    assert not (tmp_path / ".env.tmp").exists()
