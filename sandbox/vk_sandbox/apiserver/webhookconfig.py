"""admissionregistration.k8s.io/v1 Mutating- and ValidatingWebhookConfiguration: the real defaults and the
validation the sandbox relies on when it calls the webhooks (``webhooks.py``)."""

from __future__ import annotations

from typing import Any

from vk_sandbox.apiserver.errors import invalid

MUTATING = "mutatingwebhookconfigurations.admissionregistration.k8s.io"
VALIDATING = "validatingwebhookconfigurations.admissionregistration.k8s.io"
KINDS = {MUTATING: "MutatingWebhookConfiguration", VALIDATING: "ValidatingWebhookConfiguration"}
GROUP = "admissionregistration.k8s.io"


def default_configuration(key: str, obj: dict[str, Any]) -> None:
    """Defaults as the real server applies them to each webhook and rule."""
    for hook in obj.get("webhooks") or []:
        if not isinstance(hook, dict):
            continue
        hook.setdefault("failurePolicy", "Fail")
        hook.setdefault("matchPolicy", "Equivalent")
        hook.setdefault("namespaceSelector", {})
        hook.setdefault("objectSelector", {})
        hook.setdefault("timeoutSeconds", 10)
        if key == MUTATING:
            hook.setdefault("reinvocationPolicy", "Never")
        service = (hook.get("clientConfig") or {}).get("service")
        if isinstance(service, dict):
            service.setdefault("port", 443)
        for rule in hook.get("rules") or []:
            if isinstance(rule, dict):
                rule.setdefault("scope", "*")


def validate_configuration(key: str, obj: dict[str, Any]) -> None:
    """422 for what would make a call impossible or ambiguous (field paths as the real validation names them)."""
    causes: list[tuple[str, str]] = []
    names: set[str] = set()
    hooks = obj.get("webhooks") or []
    if not isinstance(hooks, list):
        hooks = []
        causes.append(("webhooks", "Invalid value: must be a list"))
    for i, hook in enumerate(hooks):
        path = f"webhooks[{i}]"
        if not isinstance(hook, dict):
            causes.append((path, "Invalid value: must be an object"))
            continue
        name = hook.get("name")
        if not isinstance(name, str) or "." not in name:
            causes.append(
                (f"{path}.name", "Invalid value: should be a domain with at least three segments separated by dots")
            )
        elif name in names:
            causes.append((f"{path}.name", f'Duplicate value: "{name}"'))
        else:
            names.add(name)
        if hook.get("sideEffects") not in ("None", "NoneOnDryRun"):
            causes.append((f"{path}.sideEffects", 'Unsupported value: supported values: "None", "NoneOnDryRun"'))
        versions = hook.get("admissionReviewVersions") or []
        if "v1" not in versions and "v1beta1" not in versions:
            causes.append(
                (f"{path}.admissionReviewVersions", "Required value: must include at least one of v1, v1beta1")
            )
        if hook.get("failurePolicy") not in ("Ignore", "Fail"):
            causes.append((f"{path}.failurePolicy", 'Unsupported value: supported values: "Fail", "Ignore"'))
        timeout = hook.get("timeoutSeconds")
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 30:
            causes.append(
                (f"{path}.timeoutSeconds", "Invalid value: the timeout value must be between 1 and 30 seconds")
            )
        if key == MUTATING and hook.get("reinvocationPolicy") not in ("Never", "IfNeeded"):
            causes.append((f"{path}.reinvocationPolicy", 'Unsupported value: supported values: "IfNeeded", "Never"'))
        if hook.get("matchConditions"):
            causes.append(
                (f"{path}.matchConditions", "Forbidden: CEL match conditions are not supported by the sandbox")
            )
        client = hook.get("clientConfig") or {}
        has_url, has_service = bool(client.get("url")), isinstance(client.get("service"), dict)
        if has_url == has_service:
            causes.append((f"{path}.clientConfig", "Required value: exactly one of url or service is required"))
        elif has_url and not str(client["url"]).startswith("https://"):
            causes.append((f"{path}.clientConfig.url", "Unsupported value: 'https' is the only allowed URL scheme"))
        elif has_service and not (client["service"].get("name") and client["service"].get("namespace")):
            causes.append((f"{path}.clientConfig.service", "Required value: name and namespace are required"))
    if causes:
        raise invalid(KINDS[key], GROUP, str((obj.get("metadata") or {}).get("name") or ""), causes)
