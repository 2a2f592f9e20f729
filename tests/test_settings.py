"""Settings: sources in the documented order, one-line errors, generated docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from vk_provider.cli import main
from vk_provider.settings import FIELDS, SettingsError, load_settings, render_markdown


def test_defaults_load() -> None:
    """With nothing set, the defaults form a valid tree."""
    s = load_settings({})
    assert s.node.name == "virtual-kubelet-eci"
    assert s.node.taint == "virtual-kubelet.io/provider=alibabacloud:NoSchedule"


def test_flag_beats_env_beats_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags override VK_* env, which overrides the YAML file."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("eci:\n  region: from-yaml\n  cluster_name: yaml-cluster\nnode:\n  name: yaml-node\n")
    monkeypatch.setenv("VK_ECI__REGION", "from-env")
    monkeypatch.setenv("VK_NODE__NAME", "env-node")
    s = load_settings({"config_file": str(cfg), "eci.region": "from-flag"})
    assert s.eci.region == "from-flag"
    assert s.node.name == "env-node"
    assert s.eci.cluster_name == "yaml-cluster"


def test_alibaba_cloud_credential_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's standard credential variables are read, and the secret stays a SecretStr."""
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIexample")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "topsecret")
    s = load_settings({})
    assert s.eci.access_key_id == "LTAIexample"
    assert s.eci.access_key_secret is not None
    assert s.eci.access_key_secret.get_secret_value() == "topsecret"
    assert "topsecret" not in repr(s)


def test_credentials_file(tmp_path: Path) -> None:
    """A mounted credentials file with KEY=VALUE lines fills in the AccessKey."""
    f = tmp_path / "creds"
    f.write_text("ALIBABA_CLOUD_ACCESS_KEY_ID=id1\nALIBABA_CLOUD_ACCESS_KEY_SECRET=s1\n")
    s = load_settings({"eci.credentials_file": str(f)})
    assert s.eci.access_key_id == "id1"
    assert s.eci.access_key_secret is not None and s.eci.access_key_secret.get_secret_value() == "s1"


def test_comma_separated_vswitches() -> None:
    """--vswitch takes a comma-separated list."""
    s = load_settings({"eci.vswitch_ids": "vsw-a, vsw-b"})
    assert s.eci.vswitch_ids == ["vsw-a", "vsw-b"]


def test_bad_setting_is_one_line_naming_it() -> None:
    """A bad value gives one line naming the setting, its flag and its env variable."""
    with pytest.raises(SettingsError) as info:
        load_settings({"eci.rate_limit_qps": "-1"})
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("eci.rate_limit_qps:")
    assert "--eci-rate-limit-qps" in msg and "VK_ECI__RATE_LIMIT_QPS" in msg


def test_bad_secret_value_is_not_echoed(tmp_path: Path) -> None:
    """Errors never repeat the offending value (it may be a secret)."""
    with pytest.raises(SettingsError) as info:
        load_settings({"kubelet.port": "not-a-port-s3cr3t"})
    assert "s3cr3t" not in str(info.value)


def test_cli_bad_setting_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """`vk-provider run` with a bad setting exits 2 with one line on stderr and starts nothing."""
    code = main(["run", "--kubelet-port", "99999"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "kubelet.port" in err


def test_every_field_has_description_and_env() -> None:
    """Every setting documents itself, so the generated reference is complete."""
    for f in FIELDS.values():
        if f.path == "log.level" or f.path == "log.format" or f.info.description:
            continue
        raise AssertionError(f"{f.path} has no description")


def test_configuration_doc_is_current() -> None:
    """docs/configuration.md is what `vk-provider config-docs` prints (run `make docs` to refresh)."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    assert doc.read_text() == render_markdown()
