"""The elastic profile: which pods run serverless, which burst, and the YAML file it is re-read from.

A pod's mode is decided in this order (docs/elastic.md, "Precedence"):

1. the pod label ``alibabacloud.com/eci: "true"`` -> serverless (ACK's opt-in label);
2. the pod label ``vk-eci.io/burst``: ``"never"`` (or ``"false"``) -> nothing changes, ``"true"`` (or
   ``"burst"``) -> burst, without a rule's limits;
3. the profile's rules, in order: the first whose ``namespaceSelector`` matches the namespace's labels and
   whose ``selector`` matches the pod's labels (an absent selector matches everything) decides;
4. no rule matches: nothing changes.

``ProfileSource`` holds the live profile. It starts from the settings and, when the daemon runs with a
YAML file, re-reads the file's ``elastic.rules`` whenever the file's bytes change (a mounted ConfigMap is
swapped behind a symlink, so the content is compared, not the mtime). A file that does not parse or
validate keeps the last good profile: a Warning log and ``vk_elastic_profile_valid 0`` say so.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import ValidationError

from vk_provider.metrics import PROFILE_RELOADS, PROFILE_RULES, PROFILE_VALID
from vk_provider.settings import ElasticRule, ElasticSettings, LabelSelector

log = structlog.get_logger("vk_provider.elastic.profiles")

LABEL_ECI = "alibabacloud.com/eci"
LABEL_BURST = "vk-eci.io/burst"
ANNOTATION_RULE = "vk-eci.io/elastic-rule"
"""Written on a pod by the webhook and the burst controller: the rule (or label) that routed it."""

Mode = Literal["serverless", "burst"]


def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; None (no selector) matches everything."""
    if selector is None:
        return True
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and (not present or labels[req.key] not in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


@dataclass(frozen=True)
class Decision:
    """What the profile says of one pod: its mode, and the rule that said it (None for a pod label)."""

    mode: Mode
    source: str
    """The rule's name, or ``label:<key>`` when a pod label decided."""
    rule: ElasticRule | None = None

    @property
    def burst_after_seconds(self) -> float:
        return self.rule.burst_after_seconds if self.rule is not None else 0.0


@dataclass(frozen=True)
class Profile:
    rules: tuple[ElasticRule, ...]

    def decide(self, pod_labels: Mapping[str, str], namespace_labels: Mapping[str, str]) -> Decision | None:
        """The pod's mode by the precedence in the module docstring; None means leave it alone."""
        if pod_labels.get(LABEL_ECI) == "true":
            return Decision("serverless", f"label:{LABEL_ECI}")
        burst = pod_labels.get(LABEL_BURST)
        if burst in ("never", "false"):
            return None
        if burst in ("true", "burst"):
            return Decision("burst", f"label:{LABEL_BURST}")
        for rule in self.rules:
            if (
                (rule.namespace_selector is not None or rule.selector is not None)
                and selector_matches(rule.namespace_selector, namespace_labels)
                and selector_matches(rule.selector, pod_labels)
            ):
                return Decision(rule.mode, rule.name, rule)
        return None

    def rule(self, name: str) -> ElasticRule | None:
        return next((r for r in self.rules if r.name == name), None)


def parse_rules(text: str, source: str) -> tuple[ElasticRule, ...] | None:
    """The ``elastic.rules`` of a settings YAML document; None when the document has no ``elastic.rules``.

    Raises ValueError with a one-line message naming ``source`` when it does not parse or validate.
    """
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source} is not valid YAML: {getattr(exc, 'problem', None) or type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source} must be a mapping of sections")
    section = data.get("elastic")
    if section is None or (isinstance(section, dict) and "rules" not in section):
        return None
    if not isinstance(section, dict):
        raise ValueError(f"{source}: elastic must be a mapping")
    try:
        return tuple(ElasticSettings.model_validate({"rules": section["rules"]}).rules)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{source}: elastic.{where}: {err['msg']}") from None


class ProfileSource:
    """The live profile, re-read from ``config_file`` when its content changes."""

    def __init__(self, settings: ElasticSettings, config_file: Path | None) -> None:
        self.settings = settings
        self.config_file = config_file
        self.profile = Profile(tuple(settings.rules))
        self._digest: str | None = None
        self._bad_digest: str | None = None
        if config_file is not None:
            try:
                self._digest = _digest(config_file.read_bytes())
            except OSError:
                self._digest = None
        PROFILE_VALID.set(1)
        PROFILE_RULES.set(len(self.profile.rules))

    def decide(self, pod_labels: Mapping[str, str], namespace_labels: Mapping[str, str]) -> Decision | None:
        return self.profile.decide(pod_labels, namespace_labels)

    def reload(self) -> bool:
        """Re-read the file if its content changed; True when a new profile was taken."""
        if self.config_file is None:
            return False
        try:
            raw = self.config_file.read_bytes()
        except OSError as exc:
            return self._bad(f"cannot read {self.config_file}: {type(exc).__name__}", None)
        digest = _digest(raw)
        if digest == self._digest:
            return False
        try:
            rules = parse_rules(raw.decode("utf-8", "replace"), str(self.config_file))
        except ValueError as exc:
            return self._bad(str(exc), digest)
        self._digest = digest
        new = Profile(tuple(rules) if rules is not None else tuple(ElasticSettings().rules))
        changed = new != self.profile
        self.profile = new
        PROFILE_VALID.set(1)
        PROFILE_RULES.set(len(new.rules))
        PROFILE_RELOADS.labels(result="ok").inc()
        if changed:
            log.info("elastic profile reloaded", rules=[r.name for r in new.rules], file=str(self.config_file))
        return changed

    def _bad(self, message: str, digest: str | None) -> bool:
        if digest is not None and digest == self._bad_digest:
            return False  # the same bad file again: said once already
        self._bad_digest = digest
        PROFILE_VALID.set(0)
        PROFILE_RELOADS.labels(result="error").inc()
        log.warning(
            "elastic profile not reloaded, keeping the last good one",
            error=message,
            rules=[r.name for r in self.profile.rules],
        )
        return False

    async def run(self) -> None:
        """Check the file every ``reload_interval_seconds``."""
        while True:
            await asyncio.sleep(self.settings.reload_interval_seconds)
            self.reload()


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def pod_labels(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return (pod.get("metadata") or {}).get("labels") or {}
