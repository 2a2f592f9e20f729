"""The profile: selector semantics, precedence of pod labels over rules, and reloading the YAML file."""

from __future__ import annotations

from pathlib import Path

from vk_provider.elastic.profiles import Profile, ProfileSource, selector_matches
from vk_provider.metrics import PROFILE_VALID
from vk_provider.settings import ElasticRule, ElasticSettings, LabelSelector


def _rule(**kw: object) -> ElasticRule:
    return ElasticRule.model_validate(kw)


def test_selector_operators() -> None:
    """matchLabels and every matchExpressions entry must hold; no selector matches everything."""
    sel = LabelSelector.model_validate(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["z1"]},
                {"key": "team", "operator": "Exists"},
            ],
        }
    )
    assert selector_matches(sel, {"app": "web", "tier": "a", "team": "x"})
    assert not selector_matches(sel, {"app": "web", "tier": "c", "team": "x"})
    assert not selector_matches(sel, {"app": "web", "tier": "a", "team": "x", "canary": "1"})
    assert not selector_matches(sel, {"app": "web", "tier": "a", "team": "x", "zone": "z1"})
    assert not selector_matches(sel, {"app": "web", "tier": "a"})
    assert selector_matches(None, {})


def test_the_default_profile_routes_by_namespace_label_only() -> None:
    """Namespaces labelled vk-eci.io/mode=burst burst, =serverless go serverless, others are untouched."""
    profile = Profile(tuple(ElasticSettings().rules))
    assert profile.decide({}, {"vk-eci.io/mode": "burst"}).mode == "burst"  # type: ignore[union-attr]
    assert profile.decide({}, {"vk-eci.io/mode": "serverless"}).mode == "serverless"  # type: ignore[union-attr]
    assert profile.decide({}, {}) is None


def test_pod_labels_come_before_the_rules_and_the_first_rule_wins() -> None:
    """alibabacloud.com/eci=true is serverless, vk-eci.io/burst never/true override the rules; rules in order."""
    profile = Profile(
        (
            _rule(name="a", mode="burst", selector={"matchLabels": {"app": "x"}}, max={"pods": 1}),
            _rule(name="b", mode="serverless", namespaceSelector={"matchLabels": {"m": "s"}}),
        )
    )
    ns = {"m": "s"}
    assert profile.decide({"alibabacloud.com/eci": "true", "vk-eci.io/burst": "never"}, {}).mode == "serverless"  # type: ignore[union-attr]
    assert profile.decide({"vk-eci.io/burst": "never", "app": "x"}, ns) is None
    label = profile.decide({"vk-eci.io/burst": "true"}, {})
    assert label is not None and label.mode == "burst" and label.rule is None
    first = profile.decide({"app": "x"}, ns)
    assert first is not None and first.source == "a" and first.rule is not None and first.rule.max is not None
    assert profile.decide({}, ns).source == "b"  # type: ignore[union-attr]


def test_a_changed_file_is_taken_and_a_bad_one_keeps_the_last_good_profile(tmp_path: Path) -> None:
    """The file is re-read when its content changes; an invalid one is refused, the metric says 0."""
    config = tmp_path / "config.yaml"
    config.write_text("node: {name: x}\n")
    source = ProfileSource(ElasticSettings(), config)
    assert not source.reload()  # unchanged
    config.write_text(
        "elastic:\n  rules:\n  - name: all\n    mode: burst\n    namespaceSelector: {}\n    burstAfterSeconds: 5\n"
    )
    assert source.reload()
    assert [r.name for r in source.profile.rules] == ["all"]
    config.write_text("elastic:\n  rules:\n  - name: all\n    mode: sideways\n    namespaceSelector: {}\n")
    assert not source.reload()
    assert [r.name for r in source.profile.rules] == ["all"]
    assert PROFILE_VALID._value.get() == 0
    config.write_text("elastic: [\n")
    assert not source.reload()
    config.write_text("elastic:\n  rules: []\n")
    assert source.reload()
    assert source.profile.rules == () and PROFILE_VALID._value.get() == 1


def test_rule_shape_is_checked() -> None:
    """A rule needs a selector; limits and burstAfterSeconds belong to burst rules; names are unique."""
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="namespaceSelector and/or a selector"):
        _rule(name="x", mode="burst")
    with pytest.raises(ValidationError, match="burst rules only"):
        _rule(name="x", mode="serverless", selector={}, max={"pods": 1})
    with pytest.raises(ValidationError, match="unique"):
        ElasticSettings.model_validate({"rules": [{"name": "x", "mode": "burst", "selector": {}}] * 2})


def test_cert_files_go_together(tmp_path: Path) -> None:
    """elastic.cert_file without elastic.key_file (or the reverse) is a settings error."""
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cert_file and key_file go together"):
        ElasticSettings(cert_file=tmp_path / "tls.crt")
