"""Tests for addons.policy.rules: the SPEC §4 rule table and how a Violation reports itself."""

from __future__ import annotations

import pytest
from wxgate.policy.rules import APIS, RULES, Rule, Severity, Violation

ERR, WARN, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

# SPEC §4, first table: id -> severity (the base severity where the SPEC gives two).
SPEC_SEVERITIES: dict[str, Severity] = {
    "scheme.insecure": ERR,
    "domain.not_listed": ERR,
    "domain.ip_address": ERR,
    "domain.localhost": ERR,
    "domain.port_mismatch": ERR,
    "domain.forbidden": ERR,
    "domain.host_mismatch": ERR,
    "domain.redirect_not_listed": ERR,
    "webview.not_listed": ERR,  # the client shows its own page: no errMsg
    "referer.rewritten": INFO,
    "referer.invalid": WARN,
    "referer.appid_mismatch": ERR,
    "concurrency.exceeded": WARN,  # warning (queue) / error (fail): the override is per violation
    "socket.exceeded": ERR,
    "timeout.exceeded": ERR,
    "background.interrupted": ERR,
    "background.blocked": ERR,
    "response.non_utf8": WARN,
    "response.bom": WARN,
    "response.status": INFO,
    "tls.version": ERR,
    "tls.no_legacy": WARN,
    "tls.untrusted": ERR,
    "tls.self_signed": ERR,
    "tls.incomplete_chain": ERR,
    "tls.hostname": ERR,
    "tls.expired": ERR,
    "tls.not_yet_valid": ERR,
    "tls.distrusted_issuer": ERR,
    "tls.ats": WARN,  # warning; error for an iOS client (per-violation override)
    "config.scheme": ERR,
    "config.ip_address": ERR,
    "config.localhost": ERR,
    "config.forbidden": ERR,
    "config.too_many_domains": ERR,
    "config.timeout": ERR,
}
# Ids the implementation adds beyond the SPEC table (a config.* rule, as the SPEC allows).
EXTRA_IDS = {"config.invalid"}

TLS_ERROR_IDS = sorted(
    rid for rid, sev in SPEC_SEVERITIES.items() if rid.startswith("tls.") and sev is ERR
)
DOMAIN_FAIL_IDS = sorted(
    rid for rid in SPEC_SEVERITIES
    if rid.split(".")[0] in ("scheme", "domain") and rid != "domain.redirect_not_listed"
)
NO_ERRMSG_IDS = sorted(
    rid for rid in SPEC_SEVERITIES
    if rid.split(".")[0] in ("referer", "response", "config", "webview")
    or rid == "tls.no_legacy"
)


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize(("rule_id", "severity"), sorted(SPEC_SEVERITIES.items()),
                         ids=sorted(SPEC_SEVERITIES))
def test_every_spec_rule_is_in_the_table_with_the_spec_severity(
    rule_id: str, severity: Severity
) -> None:
    assert rule_id in RULES
    assert RULES[rule_id].severity is severity


def test_the_table_holds_no_rule_the_spec_does_not_name() -> None:
    assert set(RULES) - set(SPEC_SEVERITIES) == EXTRA_IDS


def test_each_rule_is_filed_under_its_own_id() -> None:
    assert all(isinstance(rule, Rule) and rule.id == rid for rid, rule in RULES.items())


def test_the_four_apis_are_the_spec_ones() -> None:
    assert APIS == ("request", "uploadFile", "downloadFile", "connectSocket")


def test_severity_values_are_the_log_strings() -> None:
    assert [s.value for s in Severity] == ["info", "warning", "error"]
    assert str(Severity.ERROR) == "error"


# --------------------------------------------------------------------------- errMsg / errno

ERRMSG_CASES = [
    pytest.param("domain.not_listed", "uploadFile", "uploadFile:fail url not in domain list",
                 600002, id="not_listed-uploadFile"),
    pytest.param("domain.not_listed", "request", "request:fail url not in domain list", 600002,
                 id="not_listed-request"),
    pytest.param("scheme.insecure", "connectSocket",
                 "connectSocket:fail url not in domain list", 600002, id="scheme-connectSocket"),
    pytest.param("domain.ip_address", "downloadFile", "downloadFile:fail url not in domain list",
                 600002, id="ip-downloadFile"),
    pytest.param("domain.localhost", "request", "request:fail url not in domain list", 600002,
                 id="localhost"),
    pytest.param("domain.port_mismatch", "request", "request:fail url not in domain list",
                 600002, id="port_mismatch"),
    pytest.param("domain.forbidden", "request", "request:fail url not in domain list", 600002,
                 id="forbidden"),
    pytest.param("domain.redirect_not_listed", "downloadFile",
                 "downloadFile:fail redirect url not in domain list", 600002, id="redirect"),
    pytest.param("timeout.exceeded", "uploadFile", "uploadFile:fail timeout", None,
                 id="timeout-no-errno"),
    pytest.param("background.interrupted", "request", "request:fail interrupted", 600003,
                 id="background-interrupted"),
    pytest.param("background.blocked", "connectSocket", "connectSocket:fail interrupted", 600003,
                 id="background-blocked"),
    pytest.param("concurrency.exceeded", "downloadFile",
                 "downloadFile:fail exceed max task count", 600007, id="concurrency"),
    pytest.param("socket.exceeded", "connectSocket", "connectSocket:fail max connected", 600007,
                 id="socket-exceeded"),
    pytest.param("socket.exceeded", "request", "connectSocket:fail max connected", 600007,
                 id="socket-exceeded-is-always-connectSocket"),
    pytest.param("tls.ats", "request", "request:fail ssl hand shake error", None,
                 id="tls-ats"),
    *(
        pytest.param(rid, "request", "request:fail ssl hand shake error", None, id=rid)
        for rid in TLS_ERROR_IDS
    ),
]


@pytest.mark.parametrize(("rule_id", "api", "err_msg", "errno"), ERRMSG_CASES)
def test_violation_reports_the_spec_errmsg_and_errno(
    rule_id: str, api: str, err_msg: str, errno: int | None
) -> None:
    violation = Violation(rule_id, "x", api)
    assert violation.err_msg == err_msg
    assert violation.errno == errno


@pytest.mark.parametrize("rule_id", DOMAIN_FAIL_IDS)
@pytest.mark.parametrize("api", APIS)
def test_scheme_and_domain_rules_fail_with_url_not_in_domain_list(rule_id: str, api: str) -> None:
    violation = Violation(rule_id, "x", api)
    assert violation.err_msg == f"{api}:fail url not in domain list"
    assert violation.errno == 600002


@pytest.mark.parametrize("rule_id", NO_ERRMSG_IDS)
def test_rules_the_client_does_not_fail_have_no_errmsg(rule_id: str) -> None:
    violation = Violation(rule_id, "x")
    assert violation.err_msg is None
    assert violation.errno is None


def test_every_errmsg_template_fills_only_api() -> None:
    for rule in RULES.values():
        if rule.err_msg:
            filled = rule.err_msg.format(api="request")
            assert "{" not in filled and filled.split(":", 1)[1].startswith("fail ")


def test_violation_defaults_to_the_request_api() -> None:
    assert Violation("domain.not_listed", "x").err_msg == "request:fail url not in domain list"


def test_unknown_rule_id_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        _ = Violation("domain.nope", "x").definition


# --------------------------------------------------------------------------- severity override

LEVEL_CASES = [
    pytest.param("concurrency.exceeded", None, WARN, False, id="concurrency-queue-warning-passes"),
    pytest.param("concurrency.exceeded", ERR, ERR, True, id="concurrency-fail-mode-error-fails"),
    pytest.param("tls.ats", None, WARN, False, id="ats-warning-passes"),
    pytest.param("tls.ats", ERR, ERR, True, id="ats-on-ios-error-fails"),
    pytest.param("domain.not_listed", None, ERR, True, id="error-rule-fails"),
    pytest.param("referer.rewritten", None, INFO, False, id="info-rule-passes"),
    pytest.param("referer.invalid", None, WARN, False, id="warning-rule-passes"),
    pytest.param("domain.not_listed", WARN, WARN, False, id="downgraded-error-passes"),
]


@pytest.mark.parametrize(("rule_id", "override", "level", "fails"), LEVEL_CASES)
def test_severity_override_decides_level_and_fails_call(
    rule_id: str, override: Severity | None, level: Severity, fails: bool
) -> None:
    violation = Violation(rule_id, "x", "request", severity=override)
    assert violation.level is level
    assert violation.fails_call is fails
    # The override changes the level, not the rule's definition.
    assert violation.definition is RULES[rule_id]


def test_concurrency_override_keeps_the_errmsg() -> None:
    violation = Violation("concurrency.exceeded", "11 in flight", "uploadFile", severity=ERR)
    assert violation.err_msg == "uploadFile:fail exceed max task count"
    assert violation.errno == 600007


def test_violation_is_immutable_and_extra_is_per_instance() -> None:
    a, b = Violation("response.bom", "x"), Violation("response.bom", "x")
    a.extra["k"] = 1
    assert b.extra == {}
    with pytest.raises(AttributeError):
        a.rule = "response.status"  # type: ignore[misc]
