"""The rule table of SPEC §4, as data: id, severity and how the real client fails it.

Nothing here imports mitmproxy: the live addons, `check-config` and (later) the
offline audit all read the same table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

APIS = ("request", "uploadFile", "downloadFile", "connectSocket")


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    summary: str
    # `{api}` is filled with the interface the flow belongs to.
    err_msg: str | None = None
    errno: int | None = None


_DOMAIN_FAIL = "{api}:fail url not in domain list"

RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule("scheme.insecure", Severity.ERROR, "http:// or ws:// from a mini program",
             _DOMAIN_FAIL, 600002),
        Rule("domain.not_listed", Severity.ERROR, "host not in the interface's whitelist",
             _DOMAIN_FAIL, 600002),
        Rule("domain.ip_address", Severity.ERROR, "host is an IP address", _DOMAIN_FAIL, 600002),
        Rule("domain.localhost", Severity.ERROR, "host is localhost or a loopback name",
             _DOMAIN_FAIL, 600002),
        Rule("domain.port_mismatch", Severity.ERROR, "port differs from the configured one",
             _DOMAIN_FAIL, 600002),
        Rule("domain.forbidden", Severity.ERROR, "api.weixin.qq.com may not be called",
             _DOMAIN_FAIL, 600002),
        Rule("domain.host_mismatch", Severity.ERROR,
             "the host connected is not the host the request names", _DOMAIN_FAIL, 600002),
        Rule("domain.redirect_not_listed", Severity.ERROR, "redirect leaves the whitelist",
             "{api}:fail redirect url not in domain list", 600002),
        Rule("webview.not_listed", Severity.ERROR,
             "web-view navigation to a host not in business_domains, or not https"),
        Rule("referer.rewritten", Severity.INFO, "client Referer replaced by the canonical one"),
        Rule("referer.invalid", Severity.WARNING, "Referer is not the canonical page-frame URL"),
        Rule("referer.appid_mismatch", Severity.ERROR, "Referer appid is not a configured app"),
        Rule("concurrency.exceeded", Severity.WARNING, "more in-flight requests than allowed",
             "{api}:fail exceed max task count", 600007),
        Rule("socket.exceeded", Severity.ERROR, "more open WebSockets than allowed",
             "connectSocket:fail max connected", 600007),
        Rule("timeout.exceeded", Severity.ERROR, "no complete response within networkTimeout",
             "{api}:fail timeout"),
        Rule("background.interrupted", Severity.ERROR, "still running after background grace",
             "{api}:fail interrupted", 600003),
        Rule("background.blocked", Severity.ERROR, "started while the app is in background",
             "{api}:fail interrupted", 600003),
        Rule("response.non_utf8", Severity.WARNING, "text response that is not UTF-8"),
        Rule("response.bom", Severity.WARNING, "more than one BOM"),
        Rule("response.status", Severity.INFO, "statusCode >= 400 still reaches success"),
        *(
            Rule(rid, Severity.ERROR, summary, "{api}:fail ssl hand shake error")
            for rid, summary in (
                ("tls.version", "TLS below tls.min_version"),
                ("tls.untrusted", "chain does not lead to a trusted root"),
                ("tls.self_signed", "self-signed leaf"),
                ("tls.incomplete_chain", "server does not send the intermediates"),
                ("tls.hostname", "certificate does not cover the host"),
                ("tls.expired", "certificate expired"),
                ("tls.not_yet_valid", "certificate not yet valid"),
                ("tls.distrusted_issuer", "issued by a distrusted CA"),
            )
        ),
        Rule("tls.no_legacy", Severity.WARNING, "server refuses TLS 1.2"),
        Rule("tls.ats", Severity.WARNING, "fails an Apple ATS rule",
             "{api}:fail ssl hand shake error"),
        *(
            Rule(rid, Severity.ERROR, summary)
            for rid, summary in (
                ("config.scheme", "whitelist entry is not https:// (wss:// for sockets)"),
                ("config.ip_address", "whitelist entry is an IP address"),
                ("config.localhost", "whitelist entry is localhost"),
                ("config.forbidden", "whitelist entry is api.weixin.qq.com"),
                ("config.too_many_domains", "more entries than rules.max_domains"),
                ("config.timeout", "networkTimeout above rules.max_timeout_ms"),
                ("config.invalid", "whitelist entry is not a scheme://host[:port] URL"),
            )
        ),
    )
}


@dataclass(frozen=True)
class Violation:
    """One broken rule, as the pure core decides it; the addons add the flow's fields."""

    rule: str
    detail: str
    api: str = "request"
    # A rule whose severity depends on context (concurrency fail mode, ATS on iOS).
    severity: Severity | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def definition(self) -> Rule:
        return RULES[self.rule]

    @property
    def level(self) -> Severity:
        return self.severity or self.definition.severity

    @property
    def err_msg(self) -> str | None:
        template = self.definition.err_msg
        # A page's own loads (media, web-view) are no wx API call: no callback, no errMsg.
        if not template or self.api not in APIS:
            return None
        return template.format(api=self.api)

    @property
    def errno(self) -> int | None:
        return self.definition.errno if self.api in APIS else None

    @property
    def fails_call(self) -> bool:
        """An error-level violation is what the real client fails; warnings and info pass."""
        return self.level is Severity.ERROR
