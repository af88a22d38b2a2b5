"""`wxgate audit`: the live addons over captured flows, in capture time, with exit codes
per SPEC §2 and one sentence for each input that can't be read."""

from __future__ import annotations

import io
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http, tls
from mitmproxy import log as mitmproxy_log
from mitmproxy.io import FlowWriter, tnetstring
from wxgate import capture as capture_module
from wxgate import events
from wxgate import replay as replay_module
from wxgate.cli import main as cli_main
from wxgate.pipeline import make_addons
from wxgate.progress import Progress
from wxgate.state import Runtime

from .addon_helpers import runtime_for
from .audit_helpers import (
    MP,
    T0,
    UA,
    har_entry,
    make_flow,
    read_jsonl,
    self_signed_chain,
    tls_chain,
    write_config,
    write_flows,
    write_har,
)
from .e2e.harness import iter_fields

FLOW_FILE_RULES = Counter({
    "scheme.insecure": 1,
    "domain.not_listed": 1,
    "domain.forbidden": 1,
    "timeout.exceeded": 1,
    "referer.rewritten": 1,
    "concurrency.exceeded": 1,
    "socket.exceeded": 1,
})


def run(tmp_path: Path, *files: Path, extra: tuple[str, ...] = ()
        ) -> tuple[int, list[dict[str, Any]]]:
    out = tmp_path / "audit.jsonl"
    code = cli_main(["audit", *map(str, files), "-c", str(write_config(tmp_path)),
                     "--jsonl", str(out), "--no-progress", *extra])
    return code, [e for e in read_jsonl(out) if e["event"] == "violation"]


def stderr_sentences(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("wxgate audit:")]


def capture_with_everything(tmp_path: Path) -> tuple[Path, Path]:
    """Allowed and violating calls, a burst of 11, six sockets, one TLS chain; file order
    reversed so that only sorting by start time puts the overlaps together."""
    chain, root = tls_chain()
    root_file = tmp_path / "root.pem"
    root.cert_pem.write_to_path(str(root_file))
    flows = [
        make_flow("https://api.example.com/allowed", start=T0, headers=MP, chain=chain),
        make_flow("https://cdn.example.com/img.png", start=T0 + 0.5, headers=MP,
                  content_type="image/png", body=b"\x89PNG"),
        make_flow("http://api.example.com/plain", start=T0 + 1, headers=MP),
        make_flow("https://evil.example.net/x", start=T0 + 2, headers=MP),
        make_flow("https://api.weixin.qq.com/cgi-bin/token", start=T0 + 3, headers=MP),
        make_flow("https://api.example.com/slow", start=T0 + 4, duration=6.0, headers=MP),
        make_flow("https://api.example.com/no-referer", start=T0 + 20, headers={"User-Agent": UA}),
        make_flow("https://www.example.org/not-a-mini-program", start=T0 + 21),
    ]
    flows += [make_flow(f"https://api.example.com/burst/{i}", start=T0 + 30 + i / 100,
                        duration=1.0, headers=MP) for i in range(11)]
    # Ten in a row that do not overlap: in flight one at a time, never over the limit.
    flows += [make_flow(f"https://api.example.com/serial/{i}", start=T0 + 35 + i,
                        duration=0.5, headers=MP) for i in range(10)]
    flows += [make_flow("wss://ws.example.com/socket", start=T0 + 50 + i / 100,
                        websocket_for=5.0, headers=MP) for i in range(6)]
    # The seventh opens after the first six closed.
    flows.append(make_flow("wss://ws.example.com/socket", start=T0 + 60, websocket_for=1.0,
                           headers=MP))
    return write_flows(tmp_path / "capture.mitm", reversed(flows)), root_file


def test_flow_file_yields_exactly_the_expected_rules_and_exit_1(tmp_path: Path):
    capture, root = capture_with_everything(tmp_path)
    code, found = run(tmp_path, capture, extra=("--cafile", str(root)))
    assert code == 1
    assert Counter(e["rule"] for e in found) == FLOW_FILE_RULES
    by_rule = {e["rule"]: e for e in found}
    assert by_rule["concurrency.exceeded"]["url"].endswith("/burst/10")
    assert by_rule["socket.exceeded"]["api"] == "connectSocket"
    assert "6000 ms" in by_rule["timeout.exceeded"]["detail"]
    assert by_rule["timeout.exceeded"]["errMsg"] == "request:fail timeout"
    for event in found:
        assert set(iter_fields()) <= set(event), event
        # A loaded flow is never blocked, only reported (SPEC §5 actions).
        assert event["action"] == "reported"
        assert event["source"] == str(capture)
        assert event["timestamp"].startswith("2025-11-24T")


def test_audit_writes_nothing_to_the_live_violation_log(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    capture, _ = capture_with_everything(tmp_path)
    run(tmp_path, capture)
    assert not (tmp_path / "live-log-must-stay-empty.jsonl").exists()
    assert events.SINK.path is None


def test_har_yields_exactly_the_expected_rules_and_exit_1(tmp_path: Path):
    other = "https://servicewechat.com/wx00000000000000ff/0/page-frame.html"
    har = write_har(tmp_path / "devtools.har", [
        har_entry("https://api.example.com/allowed", start=T0, headers=MP),
        har_entry("http://api.example.com/plain", start=T0 + 1, headers=MP),
        har_entry("https://api.example.com:8443/port", start=T0 + 2, headers=MP),
        har_entry("https://10.0.0.1/ip", start=T0 + 3, headers=MP),
        har_entry("https://api.example.com/other-app", start=T0 + 4,
                  headers={"Referer": other, "User-Agent": UA}),
        har_entry("https://api.example.com/slow", start=T0 + 5, duration_ms=6000, headers=MP),
    ])
    code, found = run(tmp_path, har)
    assert code == 1
    assert Counter(e["rule"] for e in found) == Counter({
        "scheme.insecure": 1, "domain.port_mismatch": 1, "domain.ip_address": 1,
        "referer.appid_mismatch": 1, "timeout.exceeded": 1,
    })


def test_har_entries_are_judged_in_start_order_not_file_order(tmp_path: Path):
    entries = [har_entry(f"https://api.example.com/burst/{i}", start=T0 + i / 100,
                         duration_ms=1000, headers=MP) for i in range(11)]
    code, found = run(tmp_path, write_har(tmp_path / "shuffled.har", entries[::-1]))
    assert code == 0  # a warning only
    assert [(e["rule"], e["url"]) for e in found] == [
        ("concurrency.exceeded", "https://api.example.com/burst/10")]


def test_a_clean_capture_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    flows = write_flows(tmp_path / "clean.mitm", [
        make_flow("https://api.example.com/a", start=T0, headers=MP),
        make_flow("https://upload.example.com/up", start=T0 + 1, method="POST", headers={
            **MP, "Content-Type": "multipart/form-data; boundary=x"}),
        make_flow("wss://ws.example.com/socket", start=T0 + 2, websocket_for=3.0, headers=MP),
    ])
    har = write_har(tmp_path / "clean.har", [
        har_entry("https://api.example.com/b", start=T0, headers=MP)])
    code, found = run(tmp_path, flows, har)
    assert (code, found) == (0, [])
    assert "PASS: 0 violations at or above error" in capsys.readouterr().out


def test_an_audit_leaves_no_mitmproxy_log_handler_behind(tmp_path: Path):
    """Only the audit's own: a test master (taddons) run earlier in the same process may
    have left one of its own."""
    flows = write_flows(tmp_path / "one.mitm", [
        make_flow("https://api.example.com/a", start=T0, headers=MP)])

    def legacy_handlers() -> set[logging.Handler]:
        return {h for h in logging.getLogger().handlers
                if isinstance(h, mitmproxy_log.LegacyLogEvents)}

    before = legacy_handlers()
    for _ in range(2):
        assert run(tmp_path, flows) == (0, [])
        assert legacy_handlers() == before


@pytest.mark.parametrize(("fail_on", "expected"), [("error", 0), ("warning", 0), ("info", 1)])
def test_fail_on_sets_the_lowest_severity_that_fails(tmp_path: Path, fail_on: str,
                                                     expected: int):
    capture = write_flows(tmp_path / "info.mitm", [
        make_flow("https://api.example.com/x", start=T0, headers={"User-Agent": UA})])
    code, found = run(tmp_path, capture, extra=("--fail-on", fail_on))
    assert [e["rule"] for e in found] == ["referer.rewritten"]
    assert code == expected


def test_a_warning_fails_with_fail_on_warning(tmp_path: Path):
    burst = [make_flow(f"https://api.example.com/{i}", start=T0, duration=1.0, headers=MP)
             for i in range(11)]
    capture = write_flows(tmp_path / "burst.mitm", burst)
    assert run(tmp_path, capture)[0] == 0
    assert run(tmp_path, capture, extra=("--fail-on", "warning"))[0] == 1


# --- inputs that can't be read ------------------------------------------------------------

def violating(path: str, start: float) -> http.HTTPFlow:
    return make_flow(f"https://evil.example.net/{path}", start=start, headers=MP)


def test_a_malformed_file_gives_one_sentence_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    junk = tmp_path / "notes.txt"
    junk.write_text("these are my notes, not a capture\n")
    code, found = run(tmp_path, junk)
    err = capsys.readouterr().err
    assert (code, found) == (2, [])
    assert stderr_sentences(err) == [
        f"wxgate audit: {junk} is neither a mitmproxy flow file nor a HAR: it does not start "
        "with a flow record (not a tnetstring: missing or invalid length prefix)."]
    assert "Traceback" not in err


def test_damage_after_some_flows_still_reports_the_flows_before_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    capture = write_flows(tmp_path / "damaged.mitm", [violating("first", T0)])
    good_size = capture.stat().st_size
    with capture.open("ab") as fo:
        fo.write(b"garbage that is not a flow record\n" * 3)
    code, found = run(tmp_path, capture)
    err = capsys.readouterr().err
    assert code == 2
    assert [e["url"] for e in found] == ["https://evil.example.net/first"]
    assert stderr_sentences(err) == [
        f"wxgate audit: {capture} is damaged: flow 2 at byte {good_size} is not a valid flow "
        "record (not a tnetstring: missing or invalid length prefix); the 1 flow before it "
        "is still audited."]
    assert "Traceback" not in err


def test_a_truncated_flow_file_gives_one_sentence_and_reports_the_flows_before_the_cut(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    capture = write_flows(tmp_path / "cut.mitm", [
        violating("first", T0), violating("second", T0 + 1), violating("third", T0 + 2)])
    data = capture.read_bytes()
    capture.write_bytes(data[:-40])
    code, found = run(tmp_path, capture)
    err = capsys.readouterr().err
    assert code == 2
    assert [e["url"].rsplit("/", 1)[1] for e in found] == ["first", "second"]
    [sentence] = stderr_sentences(err)
    assert sentence.startswith(f"wxgate audit: {capture} is cut short: flow 3, which starts "
                               "at byte ")
    assert sentence.endswith(f"ends with the file at byte {len(data) - 40}; the 2 flows "
                             "before it are still audited.")
    assert "Traceback" not in err


def test_an_empty_file_gives_one_sentence_and_the_other_files_are_still_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    empty = tmp_path / "empty.mitm"
    empty.write_bytes(b"")
    good = write_flows(tmp_path / "good.mitm", [violating("kept", T0)])
    code, found = run(tmp_path, empty, good)
    err = capsys.readouterr().err
    assert code == 2
    assert [e["url"] for e in found] == ["https://evil.example.net/kept"]
    assert stderr_sentences(err) == [
        f"wxgate audit: {empty} is empty (0 bytes): there are no flows to audit."]


def test_a_flow_that_cannot_be_loaded_ends_the_audit_there_with_one_sentence(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """The framing is sound, so the index accepts the record; loading it is what fails."""
    newer = violating("second", T0 + 1).get_state()
    newer["version"] = 999
    capture = tmp_path / "newer.mitm"
    with capture.open("wb") as fo:
        FlowWriter(fo).add(violating("first", T0))
        offset = fo.tell()
        tnetstring.dump(newer, fo)
    code, found = run(tmp_path, capture)
    err = capsys.readouterr().err
    assert code == 2
    assert [e["url"] for e in found] == ["https://evil.example.net/first"]
    [sentence] = stderr_sentences(err)
    assert sentence.startswith(f"wxgate audit: {capture}: the flow at byte {offset} cannot be "
                               "loaded (")
    assert "flow format version 999" in sentence
    assert sentence.endswith("; the 1 flow that started before it is still audited.")


@pytest.mark.parametrize(("content", "sentence"), [
    ('{"log": {"entries": [', "is not valid JSON (Expecting value: line 1 column 22), so it "
                              "is neither a HAR nor a mitmproxy flow file."),
    ('{"log": {}}', "is JSON but not a HAR: it has no log.entries list."),
    ('{"log": {"entries": []}}', "holds no entries: there is nothing to audit."),
])
def test_a_har_that_cannot_be_read_gives_one_sentence(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, sentence: str):
    har = tmp_path / "bad.har"
    har.write_text(content)
    assert run(tmp_path, har) == (2, [])
    assert stderr_sentences(capsys.readouterr().err) == [f"wxgate audit: {har} {sentence}"]


def test_a_bad_har_entry_still_reports_the_entries_before_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    broken = har_entry("https://api.example.com/b", start=T0 + 1, headers=MP)
    del broken["startedDateTime"]
    har = write_har(tmp_path / "partial.har", [
        har_entry("https://evil.example.net/kept", start=T0, headers=MP), broken])
    code, found = run(tmp_path, har)
    assert code == 2
    assert [e["url"] for e in found] == ["https://evil.example.net/kept"]
    assert stderr_sentences(capsys.readouterr().err) == [
        f"wxgate audit: {har}: HAR entry 2 cannot be read (missing 'startedDateTime'); the 1 "
        "entry before it is still audited."]


def test_a_flow_record_over_the_read_limit_is_refused_before_it_is_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    capture = write_flows(tmp_path / "big.mitm", [violating("big", T0)])
    length = int(capture.read_bytes().split(b":", 1)[0])
    monkeypatch.setattr(capture_module, "MAX_RECORD_BYTES", 1000)
    assert run(tmp_path, capture) == (2, [])
    assert stderr_sentences(capsys.readouterr().err) == [
        f"wxgate audit: {capture} is neither a mitmproxy flow file nor a HAR: it does not "
        f"start with a flow record (a record of {length:,} bytes, over the 1,000 bytes that "
        "the audit reads)."]


def test_a_har_over_the_read_limit_is_refused_before_it_is_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    har = write_har(tmp_path / "big.har", [
        har_entry("https://evil.example.net/x", start=T0, headers=MP)])
    monkeypatch.setattr(capture_module, "MAX_HAR_BYTES", 100)
    assert run(tmp_path, har) == (2, [])
    assert stderr_sentences(capsys.readouterr().err) == [
        f"wxgate audit: {har} starts like a HAR but is {har.stat().st_size:,} bytes, over the "
        "100 bytes that the audit reads whole; export it without response bodies, or capture "
        "with mitmproxy."]


def test_a_missing_file_and_a_bad_config_each_give_one_sentence(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    missing = tmp_path / "nope.mitm"
    assert run(tmp_path, missing) == (2, [])
    assert stderr_sentences(capsys.readouterr().err) == [
        f"wxgate audit: {missing} does not exist."]
    bad = tmp_path / "bad.yaml"
    bad.write_text("limits:\n  concurency: 3\n")
    code = cli_main(["audit", str(missing), "-c", str(bad), "--no-progress"])
    assert code == 2
    [sentence] = stderr_sentences(capsys.readouterr().err)
    assert "unknown key 'concurency'" in sentence and "did you mean" in sentence


# --- one code path: the addons themselves, every hook, in capture time ----------------------

class Probe:
    """An addon the audit has never heard of: it must be loaded, configured and called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.loaded = self.configured = False
        self.chains: list[int] = []

    def load(self, loader: Any) -> None:
        self.loaded = True
        loader.add_option("probe_option", int, 7, "An option only this addon knows.")

    def configure(self, updated: set[str]) -> None:
        self.configured = self.configured or "probe_option" in updated

    def _note(self, hook: str, flow: http.HTTPFlow) -> None:
        self.calls.append((hook, flow.request.path))

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Nothing after the request exists yet on the wire.
        assert flow.response is None and flow.websocket is None and not flow.live
        self._note("requestheaders", flow)

    def request(self, flow: http.HTTPFlow) -> None:
        self._note("request", flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._note("responseheaders", flow)

    async def response(self, flow: http.HTTPFlow) -> None:
        self._note("response", flow)

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self._note("websocket_start", flow)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        self._note("websocket_message", flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._note("websocket_end", flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._note("error", flow)

    def tls_established_server(self, data: tls.TlsData) -> None:
        self.chains.append(len(data.conn.certificate_list))
        self.calls.append(("tls_established_server", str(data.conn.sni)))


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Probe:
    added = Probe()

    def with_probe(runtime: Runtime | None = None) -> list[object]:
        return [*make_addons(runtime), added]

    monkeypatch.setattr(replay_module, "make_addons", with_probe)
    return added


def test_every_hook_of_a_new_addon_runs_in_capture_time(tmp_path: Path, probe: Probe):
    chain, _ = tls_chain()
    capture = write_flows(tmp_path / "order.mitm", [
        make_flow("https://api.example.com/short", start=T0 + 1, duration=0.5, headers=MP),
        make_flow("https://api.example.com/long", start=T0, duration=2.0, headers=MP,
                  chain=chain),
        make_flow("wss://ws.example.com/ws", start=T0 + 3, websocket_for=1.0, headers=MP),
        make_flow("https://api.example.com/failed", start=T0 + 5, headers=MP,
                  error="Connection refused"),
    ])
    run(tmp_path, capture)
    assert probe.loaded and probe.configured
    assert probe.calls == [
        ("requestheaders", "/long"), ("request", "/long"),
        # Once per upstream connection, after its first flow's request, as under `lazy`.
        ("tls_established_server", "api.example.com"),
        ("requestheaders", "/short"), ("request", "/short"),
        ("responseheaders", "/short"), ("response", "/short"),
        ("responseheaders", "/long"), ("response", "/long"),
        ("requestheaders", "/ws"), ("request", "/ws"),
        ("responseheaders", "/ws"), ("response", "/ws"),
        ("websocket_start", "/ws"), ("websocket_message", "/ws"), ("websocket_message", "/ws"),
        ("websocket_end", "/ws"),
        ("requestheaders", "/failed"), ("request", "/failed"), ("error", "/failed"),
    ]
    assert probe.chains == [2]


def test_the_tls_chain_a_capture_kept_is_judged_by_the_tls_addon(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Through the proxy's own TLS addon (added here if make_addons does not list it yet):
    a self-signed leaf is tls.self_signed, a good chain is clean once its root is trusted."""
    tls_audit = pytest.importorskip("wxgate.tls_audit")

    def with_tls(runtime: Runtime | None = None) -> list[object]:
        addons = make_addons(runtime)
        if not any(isinstance(a, tls_audit.TlsAudit) for a in addons):
            addons.append(tls_audit.TlsAudit(runtime))
        return addons

    monkeypatch.setattr(replay_module, "make_addons", with_tls)
    good, root = tls_chain()
    root_file = tmp_path / "root.pem"
    root.cert_pem.write_to_path(str(root_file))
    capture = write_flows(tmp_path / "tls.mitm", [
        make_flow("https://api.example.com/good", start=T0, headers=MP, chain=good),
        make_flow("https://cdn.example.com/self", start=T0 + 1, headers=MP,
                  chain=self_signed_chain("cdn.example.com")),
    ])
    code, found = run(tmp_path, capture, extra=("--cafile", str(root_file)))
    assert code == 1
    assert [(e["rule"], e["url"]) for e in found] == [
        ("tls.self_signed", "https://cdn.example.com/self")]
    code, found = run(tmp_path, capture)
    assert sorted(e["rule"] for e in found) == ["tls.self_signed", "tls.untrusted"]


def test_a_call_the_capture_never_saw_end_gets_its_error_hook_when_the_capture_ends(
        tmp_path: Path, probe: Probe):
    hanging = make_flow("https://api.example.com/hanging", start=T0, headers=MP)
    hanging.response = None
    capture = write_flows(tmp_path / "hanging.mitm", [
        hanging, make_flow("https://api.example.com/later", start=T0 + 100, headers=MP)])
    run(tmp_path, capture)
    assert probe.calls[-1] == ("error", "/hanging")
    assert ("response", "/later") in probe.calls


def test_a_slow_captured_call_gets_one_timeout_line_from_the_live_addon(tmp_path: Path):
    """NetworkTimeout judges a loaded flow from its timestamps: one line, its wording."""
    capture = write_flows(tmp_path / "slow.mitm", [
        make_flow("https://api.example.com/slow", start=T0, duration=61.0, headers=MP)])
    _, found = run(tmp_path, capture)
    timeouts = [e for e in found if e["rule"] == "timeout.exceeded"]
    assert len(timeouts) == 1
    limit = timeouts[0]["limit_ms"]
    assert timeouts[0]["detail"] == (
        f"no complete response within the request networkTimeout of {limit} ms "
        "(the response was complete after 61000 ms in the capture)")
    assert timeouts[0]["action"] == "reported" and timeouts[0]["elapsed_ms"] == 61000


def test_an_addon_that_crashes_fails_the_audit_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    class Broken:
        def request(self, flow: http.HTTPFlow) -> None:
            raise RuntimeError("boom")

    monkeypatch.setattr(replay_module, "make_addons",
                        lambda runtime=None: [*make_addons(runtime), Broken()])
    capture = write_flows(tmp_path / "ok.mitm", [
        make_flow("https://api.example.com/a", start=T0, headers=MP)])
    code, found = run(tmp_path, capture)
    err = capsys.readouterr().err
    assert (code, found) == (1, [])
    assert stderr_sentences(err) == [
        "wxgate audit: wxgate failed 1 time while judging (first: addon error: Addon error: "
        "boom), so the audit fails closed."]
    assert "Traceback" not in err


def test_passthrough_hosts_are_not_judged_as_the_proxy_tunnels_them(tmp_path: Path):
    config = write_config(tmp_path)
    config.write_text(config.read_text() + "passthrough: ['^evil\\.example\\.net$']\n")
    capture = write_flows(tmp_path / "pass.mitm", [
        violating("tunneled", T0),
        # Passthrough matches the TLS SNI: plain HTTP to the same host is still judged.
        make_flow("http://evil.example.net/plain", start=T0 + 1, headers=MP)])
    out = tmp_path / "out.jsonl"
    assert cli_main(["audit", str(capture), "-c", str(config), "--jsonl", str(out)]) == 1
    assert [(e["rule"], e["url"]) for e in read_jsonl(out)] == [
        ("scheme.insecure", "http://evil.example.net/plain")]


def test_the_audit_drops_resolve_and_faults_but_keeps_every_rule(tmp_path: Path):
    runtime = runtime_for(tmp_path)
    config = replay_module.audit_config(runtime.config)
    assert config.resolve == {} and config.faults == ()
    assert config.apps == runtime.config.apps and config.limits == runtime.config.limits


# --- the terminal -----------------------------------------------------------------------------

class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_is_drawn_on_a_terminal_only():
    tty = FakeTty()
    bar = Progress(tty)
    bar.update("auditing x.mitm", 50, 100, force=True)
    assert tty.getvalue() == "\rauditing x.mitm [###############...............]  50% 50/100 flows"
    bar.clear()
    assert tty.getvalue().endswith("\r")
    piped = io.StringIO()
    Progress(piped).update("auditing x.mitm", 50, 100, force=True)
    assert piped.getvalue() == ""


def test_the_summary_says_which_rules_were_not_judged(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]):
    har = write_har(tmp_path / "a.har", [har_entry("https://api.example.com/a", start=T0,
                                                   headers=MP)])
    run(tmp_path, har)
    out = capsys.readouterr().out
    assert "background.blocked, background.interrupted: a capture does not record" in out
    assert "tls.no_legacy: needs a live probe" in out
    assert "tls.version" in out.split("not judged from this input:")[1]



@pytest.mark.parametrize("jobs", ["0", "-2", "two"])
def test_a_number_of_processes_below_one_is_refused_in_one_sentence(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], jobs: str):
    capture = write_flows(tmp_path / "ok.mitm", [
        make_flow("https://api.example.com/a", start=T0, headers=MP)])
    with pytest.raises(SystemExit) as done:
        cli_main(["audit", str(capture), "--jobs", jobs])
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"wxgate audit: error: argument --jobs: {jobs!r} is not a number of processes "
        "(1 or more)")
