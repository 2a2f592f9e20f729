"""Settings: sources in the documented order, one-line errors, generated docs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vk_provider.cli import main
from vk_provider.settings import FIELDS, SettingsError, load_settings, render_markdown

# `vk-provider run` refuses to start without ECI credentials: tests about other settings give a pair.
AK = {"eci.access_key_id": "LTAItest", "eci.access_key_secret": "test-secret"}


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings and credentials from the environment running the tests must not leak in."""
    for var in list(os.environ):
        if var.startswith(("VK_", "ALIBABA_CLOUD_", "ALIYUN_ACCESS_KEY_")):
            monkeypatch.delenv(var)


def test_defaults_load() -> None:
    """With only credentials set, the defaults form a valid tree."""
    s = load_settings(AK)
    assert s.node.name == "virtual-kubelet-eci"
    assert s.node.taint == "virtual-kubelet.io/provider=alibabacloud:NoSchedule"


def test_flag_beats_env_beats_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags override VK_* env, which overrides the YAML file."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("eci:\n  region: from-yaml\n  cluster_name: yaml-cluster\nnode:\n  name: yaml-node\n")
    monkeypatch.setenv("VK_ECI__REGION", "from-env")
    monkeypatch.setenv("VK_NODE__NAME", "env-node")
    s = load_settings({"config_file": str(cfg), "eci.region": "from-flag", **AK})
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
    s = load_settings({"eci.vswitch_ids": "vsw-a, vsw-b", **AK})
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


def test_list_and_map_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list in env takes the documented comma form or JSON; a map takes JSON or one variable per key."""
    monkeypatch.setenv("VK_ECI__VSWITCH_IDS", "vsw-a,vsw-b")
    monkeypatch.setenv("VK_ECI__CLUSTER_DNS", '["10.0.0.10"]')
    monkeypatch.setenv("VK_NODE__LABELS", '{"zone": "a"}')
    s = load_settings(AK)
    assert (s.eci.vswitch_ids, s.eci.cluster_dns, s.node.labels) == (["vsw-a", "vsw-b"], ["10.0.0.10"], {"zone": "a"})


BAD_SOURCES = [
    # (how the bad value is given, the setting the one line must name)
    ("flag", {"kubelet.port": "99999"}, {}, None, "kubelet.port: "),
    ("flag-map", {"node.labels": "not-a-map"}, {}, None, "node.labels: "),
    ("env", {}, {"VK_ECI__RATE_LIMIT_QPS": "fast"}, None, "eci.rate_limit_qps: "),
    ("env-map", {}, {"VK_NODE__LABELS": "zone=a"}, None, "node.labels: "),
    ("env-unknown", {}, {"VK_ECI__NO_SUCH": "1"}, None, "eci.no_such: "),
    ("yaml", {}, {}, "eci:\n  rate_limit_qps: fast\n", "eci.rate_limit_qps: "),
    ("yaml-unknown", {}, {}, "eci:\n  no_such: 1\n", "eci.no_such: "),
    ("yaml-syntax", {}, {}, "eci: {region: [\n", "config_file: "),
    ("yaml-not-a-map", {}, {}, "- eci\n- node\n", "config_file: "),
]


@pytest.mark.parametrize(
    ("flags", "env", "yaml", "named"), [b[1:] for b in BAD_SOURCES], ids=[b[0] for b in BAD_SOURCES]
)
def test_bad_setting_from_any_source_is_one_line(
    flags: dict[str, str],
    env: dict[str, str],
    yaml: str | None,
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad value from a flag, an env variable or the YAML file is a SettingsError of one line naming it."""
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    if yaml is not None:
        (tmp_path / "c.yaml").write_text(yaml)
        flags = {**flags, "config_file": str(tmp_path / "c.yaml")}
    with pytest.raises(SettingsError) as info:
        load_settings({**AK, **flags})
    msg = str(info.value)
    assert msg.startswith(named) and "\n" not in msg


@pytest.mark.parametrize(
    ("argv", "env", "yaml", "named"),
    [
        (["--eci-rate-limit-qps", "fast"], {}, None, "eci.rate_limit_qps"),
        ([], {"VK_NODE__LABELS": "zone=a"}, None, "node.labels"),
        ([], {}, "eci: {region: [\n", "config_file"),
    ],
    ids=["flag", "env", "yaml"],
)
def test_cli_bad_setting_from_any_source_exits_2(
    argv: list[str],
    env: dict[str, str],
    yaml: str | None,
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`vk-provider run`: each source's bad value is one line on stderr naming the setting, and exit 2."""
    monkeypatch.setenv("VK_ECI__ACCESS_KEY_ID", "LTAItest")
    monkeypatch.setenv("VK_ECI__ACCESS_KEY_SECRET", "test-secret")
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    if yaml is not None:
        (tmp_path / "c.yaml").write_text(yaml)
        argv = [*argv, "--config", str(tmp_path / "c.yaml")]
    code = main(["run", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith(f"vk-provider: invalid setting {named}: "), err


def test_cli_comma_vswitches_in_env_pass_the_settings_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported case: VK_ECI__VSWITCH_IDS=vsw-a,vsw-b used to end `vk-provider run` with a traceback."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VK_", "ALIBABA_CLOUD_", "ALIYUN_ACCESS_KEY_"))}
    env.update(VK_ECI__VSWITCH_IDS="vsw-a,vsw-b", VK_KUBELET__PORT="99999")
    done = subprocess.run(
        [sys.executable, "-m", "vk_provider.cli", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # It gets past the list (no traceback) to the next bad setting, reported as one line.
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "kubelet.port" in done.stderr


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


NO_CREDENTIALS_HOW = (
    "--eci-access-key-id",
    "VK_ECI__ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "eci.credentials_file",
    "--eci-ram-role-name",
    "VK_ECI__RAM_ROLE_NAME",
)


def test_no_credentials_is_one_line_naming_what_to_set() -> None:
    """Neither an AccessKey pair nor a RAM role: one line naming the flags and variables of both ways."""
    with pytest.raises(SettingsError) as info:
        load_settings({})
    msg = str(info.value)
    assert "\n" not in msg
    for how in NO_CREDENTIALS_HOW:
        assert how in msg


def test_cli_without_credentials_exits_2_and_starts_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`vk-provider run` without credentials exits 2 with one line on stderr, before the daemon is built."""
    import vk_provider.app

    def must_not_run(settings: Any) -> int:
        raise AssertionError("the daemon was started")

    monkeypatch.setattr(vk_provider.app, "main", must_not_run)
    code = main(["run", "--eci-region", "cn-beijing"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("vk-provider: invalid setting eci: no credentials for ECI")
    assert "--eci-ram-role-name" in err


@pytest.mark.parametrize(
    ("flags", "missing", "how"),
    [
        ({"eci.access_key_id": "LTAIonly"}, "eci.access_key_secret", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        ({"eci.access_key_secret": "s3cr3t-only"}, "eci.access_key_id", "ALIBABA_CLOUD_ACCESS_KEY_ID"),
    ],
)
def test_half_an_access_key_is_one_line(flags: dict[str, str], missing: str, how: str) -> None:
    """An AccessKey id without its secret (or the reverse) names the missing half, and echoes no value."""
    with pytest.raises(SettingsError) as info:
        load_settings(flags)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(missing + ": not set")
    assert FIELDS[missing].flag in msg and FIELDS[missing].env in msg and how in msg
    assert "s3cr3t" not in msg and "LTAIonly" not in msg


def test_half_an_access_key_across_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """The id from ALIBABA_CLOUD_ACCESS_KEY_ID and no secret anywhere is refused too."""
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIexample")
    with pytest.raises(SettingsError, match=r"^eci\.access_key_secret: not set"):
        load_settings({})


def test_ram_role_alone_is_enough() -> None:
    """An ECS instance RAM role replaces the AccessKey pair."""
    s = load_settings({"eci.ram_role_name": "KubernetesWorkerRole-abc"})
    assert s.eci.ram_role_name == "KubernetesWorkerRole-abc"
    assert s.eci.access_key_id is None and s.eci.access_key_secret is None


def test_ram_role_from_env_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The role name comes from VK_ECI__RAM_ROLE_NAME or the YAML file like any setting."""
    monkeypatch.setenv("VK_ECI__RAM_ROLE_NAME", "from-env")
    assert load_settings({}).eci.ram_role_name == "from-env"
    monkeypatch.delenv("VK_ECI__RAM_ROLE_NAME")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("eci:\n  ram_role_name: from-yaml\n")
    assert load_settings({"config_file": str(cfg)}).eci.ram_role_name == "from-yaml"


def test_ram_role_and_access_key_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A role and a pair (e.g. the Secret left in place) is ambiguous: one line saying to keep one."""
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "REPLACE_ME")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "REPLACE_ME")
    with pytest.raises(SettingsError) as info:
        load_settings({"eci.ram_role_name": "role"})
    msg = str(info.value)
    assert msg.startswith("eci.ram_role_name: set together with an AccessKey pair")
    assert "vk-eci-accesskey" in msg and "REPLACE_ME" not in msg


def test_bad_ram_role_name_is_one_line() -> None:
    """A role name RAM would refuse is a bad setting."""
    with pytest.raises(SettingsError, match=r"^eci\.ram_role_name: .*--eci-ram-role-name or VK_ECI__RAM_ROLE_NAME"):
        load_settings({"eci.ram_role_name": "no spaces/allowed"})


def test_security_token_from_env_stays_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """ALIBABA_CLOUD_SECURITY_TOKEN is read with the STS pair, and is a SecretStr nothing prints."""
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "STS.example")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "sts-secret-value")
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", "CAIStoken-value")
    s = load_settings({})
    assert s.eci.security_token is not None
    assert s.eci.security_token.get_secret_value() == "CAIStoken-value"
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.eci)):
        assert "CAIStoken-value" not in text and "sts-secret-value" not in text


def test_vk_security_token_beats_the_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """VK_ECI__SECURITY_TOKEN wins over ALIBABA_CLOUD_SECURITY_TOKEN, as for the AccessKey."""
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", "standard")
    monkeypatch.setenv("VK_ECI__SECURITY_TOKEN", "ours")
    s = load_settings(AK)
    assert s.eci.security_token is not None and s.eci.security_token.get_secret_value() == "ours"


def test_security_token_without_pair_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token alone cannot sign: one line naming the pair to set, never the token."""
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", "CAIStoken-value")
    with pytest.raises(SettingsError) as info:
        load_settings({})
    msg = str(info.value)
    assert msg.startswith("eci.security_token: an STS token needs its STS AccessKey pair")
    assert "--eci-access-key-id" in msg and "CAIStoken-value" not in msg


def test_credentials_file_with_security_token(tmp_path: Path) -> None:
    """A credentials file may carry the STS token next to the pair."""
    f = tmp_path / "creds"
    f.write_text("access_key_id: STS.x\naccess_key_secret: s\nsecurity_token: tok\n")
    s = load_settings({"eci.credentials_file": str(f)})
    assert s.eci.security_token is not None and s.eci.security_token.get_secret_value() == "tok"


@pytest.mark.parametrize("flags", [{"eci.ram_role_name": "role"}, {**AK, "eci.security_token": "tok"}])
def test_sdk_access_key_variables_would_replace_a_role_or_token(
    flags: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """aliyunsdkcore signs with ALIYUN_ACCESS_KEY_ID/SECRET over any credential object: refused, not ignored."""
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_ID", "other")
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_SECRET", "other-secret")
    with pytest.raises(SettingsError, match="ALIYUN_ACCESS_KEY_ID and ALIYUN_ACCESS_KEY_SECRET are set"):
        load_settings(flags)


def test_shipped_configmap_ram_role_example_loads(tmp_path: Path) -> None:
    """Uncommenting the ram_role_name line of manifests/configmap.yaml gives valid settings with no AccessKey."""
    import yaml

    manifest = Path(__file__).resolve().parents[1] / "manifests" / "configmap.yaml"
    text = yaml.safe_load(manifest.read_text())["data"]["config.yaml"]
    assert "# ram_role_name: " in text
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text.replace("# ram_role_name: ", "ram_role_name: "))
    s = load_settings({"config_file": str(cfg)})
    assert s.eci.ram_role_name and s.eci.access_key_id is None
