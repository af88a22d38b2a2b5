"""The config model (SPEC §3), its loading and its validation by the console's rules.

Pure: reads files only through `load_config`/`check_config`, which take a path;
everything else works on parsed data. Every problem is one sentence that names
the file, the line and the key.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..faults import BackgroundWindow, Fault, parse_fault
from .clients import is_referer_version
from .hosts import HostKind, classify_host
from .rules import APIS
from .yamlmarks import MarkedDict, MarkedList, load_marked

FORBIDDEN_HOSTS = frozenset({"api.weixin.qq.com"})
DEFAULT_TIMEOUT_MS = 60000
SCHEME_FOR_API = {
    "request": "https",
    "uploadFile": "https",
    "downloadFile": "https",
    "connectSocket": "wss",
}
# The open-platform domain API's field names.
DOMAINS_FILE_KEYS = {
    "requestdomain": "request",
    "wsrequestdomain": "connectSocket",
    "uploaddomain": "uploadFile",
    "downloaddomain": "downloadFile",
}
_ENTRY_RE = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>\[[^\]]*\]|[^/:?#\[\]]*)"
    r"(?::(?P<port>\d{1,5}))?/?$"
)
_APPID_RE = re.compile(r"^wx[0-9a-f]{16}$")
_LABEL_RE = re.compile(r"[a-z0-9_-]{1,63}")


@dataclass(frozen=True)
class Problem:
    """One located problem. An error makes the config unusable; a warning (a project that
    is not built yet) is shown by check-config and the banner and changes nothing else."""

    file: str
    line: int | None
    key: str
    message: str
    rule: str | None = None
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        tail = f" [{self.rule}]" if self.rule else ""
        label = "warning: " if self.severity == "warning" else ""
        return f"{where}: {label}{self.key}: {self.message}{tail}"


class ConfigError(Exception):
    """The config can't be used; `problems` holds every located problem."""

    def __init__(self, problems: list[Problem], unreadable: bool = False) -> None:
        self.problems = problems
        self.unreadable = unreadable
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class DomainEntry:
    scheme: str
    host: str
    port: int | None
    raw: str


@dataclass(frozen=True)
class AppConfig:
    appid: str
    version: str = "0"
    domains: Mapping[str, tuple[DomainEntry, ...]] = field(
        default_factory=lambda: {api: () for api in APIS}
    )
    network_timeout: Mapping[str, int] = field(
        default_factory=lambda: {api: DEFAULT_TIMEOUT_MS for api in APIS}
    )
    project: str | None = None
    # project.config.json's setting.urlCheck; False = DevTools checks nothing.
    url_check: bool | None = None
    # The web-view (业务域名) list: where a <web-view> may navigate.
    business_domains: tuple[DomainEntry, ...] = ()
    # Where each resolved value came from, for check-config: "appid", "version",
    # "url_check", "domains.<api>", "network_timeout.<api>" -> "file:line", a project
    # file, or "default".
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    concurrency: int = 10
    concurrency_pool: str = "shared"
    over_concurrency: str = "queue"
    sockets: int = 5
    background_grace_s: int = 5


@dataclass(frozen=True)
class ClientRules:
    max_domains: int = 20
    max_timeout_ms: int = 60000
    socket_any_port: bool = False


@dataclass(frozen=True)
class TlsRules:
    min_version: str = "1.2"
    ats: bool = True
    distrusted_issuers: tuple[str, ...] = ("WoSign", "StartCom")


@dataclass(frozen=True)
class LogConfig:
    path: str = "wxgate-violations.jsonl"
    console: str = "pretty"
    # Longer string fields (URL, Referer, User-Agent, detail) are cut, the length noted.
    max_field_bytes: int = 2048


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Loopback and the private ranges: the phones on the office Wi-Fi and DevTools.
DEFAULT_CLIENTS: tuple[str, ...] = (
    "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
    "fc00::/7", "fe80::/10",
)


@dataclass(frozen=True)
class Config:
    mode: str = "enforce"
    scope: str = "miniprogram"
    allow_lan_ip: bool = False
    passthrough: tuple[str, ...] = ()
    # (host, port or None for any port) -> (address, port)
    resolve: Mapping[tuple[str, int | None], tuple[str, int]] = field(default_factory=dict)
    block_with: str = "fail"
    apps: tuple[AppConfig, ...] = ()
    limits: Limits = Limits()
    rules: ClientRules = ClientRules()
    tls: TlsRules = TlsRules()
    faults: tuple[Fault, ...] = ()
    background_windows: tuple[BackgroundWindow, ...] = ()
    seed: int | None = None
    log: LogConfig = LogConfig()
    control_token: str | None = None
    # Who may use the proxy (SPEC §8).
    clients: tuple[IpNetwork, ...] = tuple(ipaddress.ip_network(c) for c in DEFAULT_CLIENTS)
    # True lets LAN clients reach this machine's own loopback/link-local services.
    local_destinations: bool = False
    source: str = "<default>"
    # Problems that leave the config usable (a project before its build): check-config
    # and the banner show them.
    warnings: tuple[Problem, ...] = ()

    def app(self, appid: str | None) -> AppConfig | None:
        for app in self.apps:
            if app.appid == appid:
                return app
        return None

    def default_app(self) -> AppConfig | None:
        """The app a call is judged against when its Referer names none: the first listed."""
        return self.apps[0] if self.apps else None

    def resolve_target(self, host: str, port: int) -> tuple[str, int] | None:
        """Where `resolve:` sends host:port (a `host` key applies to every port), or None."""
        name = classify_host(host).name
        return self.resolve.get((name, port)) or self.resolve.get((name, None))


# --- parsing ---------------------------------------------------------------------------------


class _Reader:
    """Walks the parsed YAML, collecting problems instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def problem(self, line: int | None, key: str, message: str, rule: str | None = None) -> None:
        self.problems.append(Problem(self.file, line, key, message, rule))

    def add(self, problem: Problem) -> None:
        """A problem located in another file (a DevTools project's JSON)."""
        (self.warnings if problem.severity == "warning" else self.problems).append(problem)

    def where(self, line: int | None) -> str:
        """A place in this file, as check-config names the source of a value."""
        return f"{self.file}:{line}" if line else self.file

    def section(self, node: Any, path: str, known: tuple[str, ...], line: int) -> MarkedDict:
        if node is None:
            empty = MarkedDict()
            empty.line, empty.key_lines = line, {}
            return empty
        if not isinstance(node, MarkedDict):
            self.problem(line, path or "(top level)", f"must be a mapping, not {_kind(node)}")
            empty = MarkedDict()
            empty.line, empty.key_lines = line, {}
            return empty
        for key in node:
            if key not in known:
                hint = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                where = f" in {path}" if path else ""
                tail = f"; did you mean '{hint[0]}'?" if hint else f" (known: {', '.join(known)})"
                self.problem(
                    node.key_lines.get(key), _join(path, str(key)),
                    f"unknown key '{key}'{where}{tail}",
                )
        return node

    def value(
        self, node: MarkedDict, path: str, key: str, kind: type | tuple[type, ...], default: Any,
        choices: tuple[Any, ...] | None = None, minimum: int | None = None,
    ) -> Any:
        if key not in node or node[key] is None:
            return default
        value = node[key]
        line = node.key_lines.get(key, node.line)
        full = _join(path, key)
        # bool is an int subclass; YAML `yes` must not pass as a number.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
            self.problem(line, full, f"must be {_describe(kind)}, not {_kind(value)} {value!r}")
            return default
        if choices is not None and value not in choices:
            options = " or ".join(repr(c) for c in choices)
            self.problem(line, full, f"must be {options}, not {value!r}")
            return default
        if minimum is not None and isinstance(value, int) and value < minimum:
            self.problem(line, full, f"must be at least {minimum}, not {value}")
            return default
        return value

    def str_list(self, node: MarkedDict, path: str, key: str) -> list[tuple[str, int]]:
        """A list of strings, each with its line."""
        if key not in node or node[key] is None:
            return []
        value = node[key]
        line = node.key_lines.get(key, node.line)
        if not isinstance(value, MarkedList):
            self.problem(line, _join(path, key), f"must be a list, not {_kind(value)}")
            return []
        out = []
        for i, (item, item_line) in enumerate(zip(value, value.item_lines, strict=True)):
            if not isinstance(item, str):
                self.problem(
                    item_line, f"{_join(path, key)}[{i}]", f"must be a string, not {_kind(item)}"
                )
                continue
            out.append((item, item_line))
        return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _describe(kind: type | tuple[type, ...]) -> str:
    names = {bool: "true or false", int: "an integer", str: "a string", float: "a number"}
    return " or ".join(names.get(k, k.__name__) for k in _tuple(kind))


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), type(value).__name__
    )


TOP_KEYS = (
    "mode", "scope", "allow_lan_ip", "passthrough", "resolve", "block_with", "apps", "limits",
    "rules", "tls", "faults", "seed", "log", "control", "clients", "local_destinations",
)
APP_KEYS = ("appid", "version", "project", "domains", "domains_file", "business_domains",
            "network_timeout")
LIMIT_KEYS = ("concurrency", "concurrency_pool", "over_concurrency", "sockets",
              "background_grace_s")
RULE_KEYS = ("max_domains", "max_timeout_ms", "socket_any_port")
TLS_KEYS = ("min_version", "ats", "distrusted_issuers")
LOG_KEYS = ("path", "console", "max_field_bytes")
CONTROL_KEYS = ("token",)


def parse_domain_entry(raw: str) -> DomainEntry | None:
    match = _ENTRY_RE.match(raw.strip())
    if not match:
        return None
    host = classify_host(match["host"]).name
    port = int(match["port"]) if match["port"] else None
    return DomainEntry(match["scheme"].lower(), host, port, raw)


def judge_domain_entry(api: str, raw: str) -> tuple[str, str] | None:
    """The console's verdict on one whitelist entry: (rule id, reason), or None if accepted."""
    match = _ENTRY_RE.match(raw.strip())
    if not match or not match["host"]:
        return "config.invalid", f"'{raw}' is not a scheme://host[:port] URL without a path"
    info = classify_host(match["host"])
    want = SCHEME_FOR_API[api]
    if match["scheme"].lower() != want:
        return "config.scheme", f"'{raw}' must start with {want}:// for {api}"
    if info.kind is HostKind.IP:
        return "config.ip_address", f"'{raw}' is an IP address; the console accepts domain names"
    if info.kind is HostKind.LOCALHOST:
        return "config.localhost", f"'{raw}' is a localhost name"
    if info.name in FORBIDDEN_HOSTS:
        return "config.forbidden", f"'{raw}' may not be a server domain"
    # A wildcard, userinfo or empty label could never match a call; say so instead.
    if not all(_LABEL_RE.fullmatch(label) for label in info.name.split(".")):
        return "config.invalid", (f"'{raw}' does not name one host (no wildcard, "
                                  "user@ or empty label)")
    if match["port"] and not 0 < int(match["port"]) < 65536:
        return "config.invalid", f"'{raw}' has port {match['port']}, outside 1-65535"
    return None


def _read_json(reader: _Reader, path: Path, key: str, line: int | None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        reader.problem(line, key, f"{path} does not exist")
    except (OSError, UnicodeDecodeError) as exc:
        reader.problem(line, key, f"{path} cannot be read ({exc.__class__.__name__})")
    except json.JSONDecodeError as exc:
        reader.problem(line, key, f"{path} line {exc.lineno} is not valid JSON: {exc.msg}")
    return None


# --- DevTools projects (SPEC §3 "Projects") ----------------------------------------------------

# DevTools' tourist mode: no appid of one's own. Valid in the YAML; in a project it is no
# real appid, so an appid in the YAML wins over it.
TOURIST_APPID = "touristappid"


def is_real_appid(appid: str) -> bool:
    return _APPID_RE.fullmatch(appid) is not None


def valid_appid(appid: str) -> bool:
    """An appid the config accepts: a real one, or DevTools' tourist mode."""
    return is_real_appid(appid) or appid == TOURIST_APPID


@dataclass(frozen=True)
class _JsonFile:
    """A project JSON file, parsed, with its text kept to find the line of a key."""

    path: Path
    data: dict[str, Any]
    text: str

    def line(self, *keys: str) -> int | None:
        """The line of a nested key, each key looked for after the one before it; the
        deepest one found when the rest are not written."""
        pos, line = 0, None
        for key in keys:
            match = re.compile(rf'"{re.escape(key)}"\s*:').search(self.text, pos)
            if match is None:
                break
            pos, line = match.end(), self.text.count("\n", 0, match.start()) + 1
        return line

    def where(self, *keys: str) -> str:
        line = self.line(*keys)
        return f"{self.path}:{line}" if line else str(self.path)


def _read_project_file(reader: _Reader, path: Path) -> _JsonFile | None:
    """One of a project's JSON files; its problems are located in it. None when it is
    missing or unusable."""
    if not path.is_file():
        return None
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        reader.add(Problem(file, None, "(file)", f"cannot be read ({exc.__class__.__name__})"))
        return None
    except json.JSONDecodeError as exc:
        reader.add(Problem(file, exc.lineno, "(json)", f"is not valid JSON: {exc.msg}"))
        return None
    except RecursionError:
        reader.add(Problem(file, None, "(json)", "is nested too deeply to read"))
        return None
    if not isinstance(data, dict):
        reader.add(Problem(file, None, "(file)", f"must hold a JSON object, not {_kind(data)}"))
        return None
    return _JsonFile(path, data, text)


def project_root(raw: str) -> str:
    """A miniprogramRoot/minigameRoot as DevTools takes it: with or without `./` and a
    trailing slash, in Windows or POSIX spelling; always under the project folder."""
    path = raw.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path.strip("/") or "."


@dataclass
class _Project:
    """What a DevTools project folder says, each value with the file it came from."""

    root: Path
    config: _JsonFile | None = None  # project.config.json
    appid: Any = None  # as written: any JSON value, None when absent
    url_check: bool | None = None
    url_check_source: str | None = None
    timeouts_file: _JsonFile | None = None  # app.json or game.json
    timeouts: dict[str, Any] = field(default_factory=dict)  # as written
    # Why networkTimeout could not be read (root folder or app.json missing); _app ends
    # the sentence with what the timeouts are instead.
    unread: Problem | None = None


def _project(reader: _Reader, root: Path) -> _Project:
    """project.config.json, then project.private.config.json (its `setting` overrides),
    then networkTimeout from game.json (compileType game) or app.json (then game.json)
    under miniprogramRoot/minigameRoot."""
    project = _Project(root)
    cfg = project.config = _read_project_file(reader, root / "project.config.json")
    private = _read_project_file(reader, root / "project.private.config.json")
    data = cfg.data if cfg is not None else {}
    project.appid = data.get("appid")
    for source in (cfg, private):
        setting = source.data.get("setting") if source is not None else None
        if (source is not None and isinstance(setting, dict)
                and isinstance(setting.get("urlCheck"), bool)):
            project.url_check = setting["urlCheck"]
            project.url_check_source = source.where("setting", "urlCheck")

    game = data.get("compileType") == "game"
    root_key = "minigameRoot" if game else "miniprogramRoot"
    src = root
    if cfg is not None and data.get(root_key) is not None:
        raw = data[root_key]
        if not isinstance(raw, str):
            reader.add(Problem(str(cfg.path), cfg.line(root_key), root_key,
                               f"must be a folder path, not {_kind(raw)}"))
            return project
        src = (root / project_root(raw)).resolve()
        if not src.is_dir():
            project.unread = Problem(
                str(cfg.path), cfg.line(root_key), root_key,
                f"'{raw}' is not a folder in {root} (a Taro or uni-app project before its "
                "build?): networkTimeout is not read", severity="warning")
            return project
    names = ("game.json",) if game else ("app.json", "game.json")
    found = next((src / name for name in names if (src / name).is_file()), None)
    if found is None:
        project.unread = Problem(str(src / names[0]), None, "(file)",
                                 "does not exist: networkTimeout is not read",
                                 severity="warning")
        return project
    file = project.timeouts_file = _read_project_file(reader, found)
    written = file.data.get("networkTimeout") if file is not None else None
    if file is not None and isinstance(written, dict):
        project.timeouts = {api: v for api, v in written.items() if api in APIS}
    elif file is not None and written is not None:
        reader.add(Problem(str(file.path), file.line("networkTimeout"), "networkTimeout",
                           f"must be an object of interface: milliseconds, not {_kind(written)}",
                           "config.timeout"))
    return project


def _json_value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _project_timeouts(reader: _Reader, project: _Project, rules: ClientRules,
                      overridden: set[str]) -> dict[str, tuple[int, str]]:
    """The project's networkTimeout values in use (those network_timeout does not
    override), each with where it was written; a value the client would not take is a
    config.timeout error located in app.json/game.json."""
    out: dict[str, tuple[int, str]] = {}
    file = project.timeouts_file
    if file is None:
        return out
    for api, value in project.timeouts.items():
        if api in overridden:
            continue
        key, line = f"networkTimeout.{api}", file.line("networkTimeout", api)
        integral = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
        if not integral:
            reason = (f"is {_kind(value)} {_json_value(value)}; a networkTimeout is an "
                      "integer number of milliseconds")
        elif value < 1:
            reason = f"is {int(value)}; a networkTimeout is a positive number of milliseconds"
        elif value > rules.max_timeout_ms:
            reason = f"is {int(value)} ms; the client allows at most {rules.max_timeout_ms}"
        else:
            out[api] = (int(value), file.where("networkTimeout", api))
            continue
        reader.add(Problem(str(file.path), line, key, reason, "config.timeout"))
    return out


def _appid(reader: _Reader, sec: MarkedDict, path: str, appid: str | None,
           project: _Project | None) -> tuple[str | None, str]:
    """The app's appid and where it came from: the YAML's, unless it gives none and the
    project has a usable one."""
    key = _join(path, "appid")
    cfg = project.config if project is not None else None
    written = project.appid if project is not None else None
    if appid is not None:
        line = sec.key_lines.get("appid", sec.line)
        if not valid_appid(appid):
            reader.problem(line, key, f"'{appid}' is not an appid (wx followed by 16 hex "
                           "digits, or touristappid)")
        elif (cfg is not None and isinstance(written, str) and is_real_appid(written)
              and written != appid):
            reader.problem(line, key, f"{appid} is not the appid that {cfg.path} gives "
                           f"({written})")
        return appid, reader.where(line)
    if project is None:
        reader.problem(sec.line, key, "is missing (and no project gives one)")
        return None, ""
    if cfg is None:
        if not (project.root / "project.config.json").is_file():
            reader.problem(sec.line, key, f"is missing, and {project.root} has no "
                           "project.config.json to give it")
        return None, ""
    if isinstance(written, str) and valid_appid(written):
        return written, cfg.where("appid")
    if written is None:
        reason = "is missing"
    elif written == "":
        reason = "is empty"
    else:
        reason = (f"{_json_value(written)} is not an appid (wx followed by 16 hex digits, "
                  "or touristappid)")
    reader.add(Problem(str(cfg.path), cfg.line("appid"), "appid",
                       f"{reason}: give the app's appid in {key}"))
    return None, ""


def _app(reader: _Reader, node: Any, line: int, index: int, base: Path, rules: ClientRules
         ) -> AppConfig | None:
    path = f"apps[{index}]"
    sec = reader.section(node, path, APP_KEYS, line)
    sources: dict[str, str] = {}
    appid = reader.value(sec, path, "appid", str, None)
    version = str(reader.value(sec, path, "version", (str, int), AppConfig.version))
    if not is_referer_version(version):
        reader.problem(sec.key_lines.get("version", sec.line), _join(path, "version"),
                       f"'{version}' is not a Referer version (\"0\", \"devtools\" or a release "
                       "number)")
        version = AppConfig.version
    sources["version"] = (reader.where(sec.key_lines["version"]) if "version" in sec
                          else "default")
    project_dir = reader.value(sec, path, "project", str, None)
    project: _Project | None = None
    if project_dir:
        root = (base / project_dir).resolve()
        if root.is_dir():
            project = _project(reader, root)
        else:
            reader.problem(sec.key_lines.get("project"), _join(path, "project"),
                           f"{root} is not a directory")
    appid, sources["appid"] = _appid(reader, sec, path, appid, project)
    if appid is None:
        return None
    url_check = project.url_check if project is not None else None
    if project is not None and project.url_check_source:
        sources["url_check"] = project.url_check_source

    entries: dict[str, list[tuple[str, int | None, str]]] = {api: [] for api in APIS}
    domain_sources: dict[str, list[str]] = {api: [] for api in APIS}
    dom_path = _join(path, "domains")
    domains = reader.section(sec.get("domains"), dom_path, APIS,
                             sec.key_lines.get("domains", sec.line))
    for api in APIS:
        for raw, item_line in reader.str_list(domains, dom_path, api):
            entries[api].append((raw, item_line, f"{dom_path}.{api}"))
        if entries[api]:
            domain_sources[api].append(reader.where(domains.key_lines.get(api)))
    domains_file = reader.value(sec, path, "domains_file", str, None)
    if domains_file:
        df_line = sec.key_lines.get("domains_file")
        data = _read_json(reader, base / domains_file, _join(path, "domains_file"), df_line)
        if data is not None and not isinstance(data, dict):
            reader.problem(df_line, _join(path, "domains_file"), "must hold a JSON object")
        elif isinstance(data, dict):
            for json_key, api in DOMAINS_FILE_KEYS.items():
                values = data.get(json_key) or []
                for raw in values if isinstance(values, list) else []:
                    if isinstance(raw, str):
                        entries[api].append((raw, df_line, f"{domains_file}:{json_key}"))
                if values:
                    domain_sources[api].append(f"{base / domains_file}:{json_key}")

    parsed: dict[str, tuple[DomainEntry, ...]] = {}
    for api in APIS:
        seen: dict[str, DomainEntry] = {}
        for raw, entry_line, key in entries[api]:
            verdict = judge_domain_entry(api, raw)
            if verdict:
                reader.problem(entry_line, key, verdict[1], verdict[0])
                continue
            entry = parse_domain_entry(raw)
            if entry:
                seen.setdefault(f"{entry.host}:{entry.port}", entry)
        if len(seen) > rules.max_domains:
            reader.problem(domains.key_lines.get(api, domains.line), f"{dom_path}.{api}",
                           f"has {len(seen)} domains; the console accepts at most "
                           f"{rules.max_domains}", "config.too_many_domains")
        parsed[api] = tuple(seen.values())
        sources[f"domains.{api}"] = ", ".join(domain_sources[api])

    nt_path = _join(path, "network_timeout")
    nt = reader.section(sec.get("network_timeout"), nt_path, APIS,
                        sec.key_lines.get("network_timeout", sec.line))
    written = {api for api in APIS if nt.get(api) is not None}
    from_project = (_project_timeouts(reader, project, rules, written)
                    if project is not None else {})
    timeouts: dict[str, int] = {}
    # The unwritten default is capped by max_timeout_ms: only a timeout someone wrote can break it.
    default_timeout = min(DEFAULT_TIMEOUT_MS, rules.max_timeout_ms)
    for api in APIS:
        if api in written:
            value = reader.value(nt, nt_path, api, int, default_timeout, minimum=1)
            if value > rules.max_timeout_ms:
                reader.problem(nt.key_lines.get(api), f"{nt_path}.{api}",
                               f"is {value} ms; the client allows at most "
                               f"{rules.max_timeout_ms}", "config.timeout")
                value = rules.max_timeout_ms
            sources[f"network_timeout.{api}"] = reader.where(nt.key_lines.get(api))
        elif api in from_project:
            value, sources[f"network_timeout.{api}"] = from_project[api]
        else:
            value, sources[f"network_timeout.{api}"] = default_timeout, "default"
        timeouts[api] = value
    if project is not None and project.unread is not None and written != set(APIS):
        rest = "the timeouts" if not written else f"the timeouts {nt_path} does not set"
        reader.add(replace(project.unread, message=f"{project.unread.message}, so {rest} are "
                           f"the default {default_timeout} ms"))
    business = _business_domains(reader, sec, path)
    return AppConfig(appid, version, parsed, timeouts, project_dir, url_check, business,
                     sources)


# The console's limit on business domains (业务域名) per mini program.
MAX_BUSINESS_DOMAINS = 200


def judge_business_domain(raw: str) -> tuple[str, str] | None:
    """The console's verdict on one business domain: (rule id, reason), or None if accepted.

    The server-domain rules for an https:// entry, and no port: the console takes letters,
    digits, '-' and dots only.
    """
    verdict = judge_domain_entry("request", raw)
    if verdict is not None:
        rule, reason = verdict
        if rule == "config.scheme":
            reason = f"'{raw}' must start with https://: a web-view opens only https pages"
        elif rule == "config.forbidden":
            reason = f"'{raw}' may not be a business domain"
        return rule, reason
    entry = parse_domain_entry(raw)
    if entry is not None and entry.port is not None:
        return "config.invalid", f"'{raw}' names a port; a business domain is a name without one"
    return None


def _business_domains(reader: _Reader, sec: MarkedDict, path: str) -> tuple[DomainEntry, ...]:
    key = _join(path, "business_domains")
    seen: dict[str, DomainEntry] = {}
    for raw, line in reader.str_list(sec, path, "business_domains"):
        verdict = judge_business_domain(raw)
        if verdict:
            reader.problem(line, key, verdict[1], verdict[0])
            continue
        entry = parse_domain_entry(raw)
        if entry:
            seen.setdefault(entry.host, entry)
    if len(seen) > MAX_BUSINESS_DOMAINS:
        reader.problem(sec.key_lines.get("business_domains", sec.line), key,
                       f"has {len(seen)} domains; the console accepts at most "
                       f"{MAX_BUSINESS_DOMAINS} business domains", "config.too_many_domains")
    return tuple(seen.values())


def _resolve(reader: _Reader, node: MarkedDict) -> dict[tuple[str, int | None], tuple[str, int]]:
    out: dict[tuple[str, int | None], tuple[str, int]] = {}
    value = node.get("resolve")
    if value is None:
        return out
    line = node.key_lines.get("resolve", node.line)
    if not isinstance(value, MarkedDict):
        reader.problem(line, "resolve", f"must be a mapping of host to address:port, "
                       f"not {_kind(value)}")
        return out
    for src, dst in value.items():
        key_line = value.key_lines.get(src, line)
        src_addr = _split_hostport(str(src))
        dst_addr = _split_hostport(str(dst)) if isinstance(dst, str) else None
        if src_addr is None:
            reader.problem(key_line, f"resolve.{src}", "must be host or host:port")
        elif dst_addr is None or dst_addr[1] is None:
            reader.problem(key_line, f"resolve.{src}", f"must map to address:port, not {dst!r}")
        else:
            out[(classify_host(src_addr[0]).name, src_addr[1])] = (dst_addr[0], dst_addr[1])
    return out


def _clients(reader: _Reader, node: MarkedDict) -> tuple[IpNetwork, ...]:
    if "clients" not in node or node["clients"] is None:
        return Config.clients
    networks = []
    for i, (text, line) in enumerate(reader.str_list(node, "", "clients")):
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            reader.problem(line, f"clients[{i}]", f"'{text}' is not an address or CIDR range "
                           "(such as 192.168.1.0/24)")
    return tuple(networks)


def _split_hostport(text: str) -> tuple[str, int | None] | None:
    match = re.fullmatch(r"(\[[^\]]+\]|[^:\[\]/\s]+)(?::(\d{1,5}))?", text.strip())
    if not match or (match[2] and not 0 < int(match[2]) < 65536):
        return None
    return match[1].strip("[]"), int(match[2]) if match[2] else None


def parse_config(data: Any, file: str, base: Path | None = None) -> tuple[Config, list[Problem]]:
    """Build a Config from parsed YAML; returns it with every problem found."""
    reader = _Reader(file)
    base = base or Path(file).resolve().parent
    top = reader.section(data, "", TOP_KEYS, 1)
    v = reader.value

    rules_sec = reader.section(top.get("rules"), "rules", RULE_KEYS,
                               top.key_lines.get("rules", 1))
    # Each default is the dataclass's own (ClientRules.max_domains, ...): written once.
    rules = ClientRules(
        max_domains=v(rules_sec, "rules", "max_domains", int, ClientRules.max_domains,
                      minimum=1),
        max_timeout_ms=v(rules_sec, "rules", "max_timeout_ms", int, ClientRules.max_timeout_ms,
                         minimum=1),
        socket_any_port=v(rules_sec, "rules", "socket_any_port", bool,
                          ClientRules.socket_any_port),
    )
    lim = reader.section(top.get("limits"), "limits", LIMIT_KEYS, top.key_lines.get("limits", 1))
    limits = Limits(
        concurrency=v(lim, "limits", "concurrency", int, Limits.concurrency, minimum=1),
        concurrency_pool=v(lim, "limits", "concurrency_pool", str, Limits.concurrency_pool,
                           choices=("shared", "per_api")),
        over_concurrency=v(lim, "limits", "over_concurrency", str, Limits.over_concurrency,
                           choices=("queue", "fail")),
        sockets=v(lim, "limits", "sockets", int, Limits.sockets, minimum=1),
        background_grace_s=v(lim, "limits", "background_grace_s", int,
                             Limits.background_grace_s, minimum=0),
    )
    tls_sec = reader.section(top.get("tls"), "tls", TLS_KEYS, top.key_lines.get("tls", 1))
    tls = TlsRules(
        min_version=str(v(tls_sec, "tls", "min_version", (str, float), TlsRules.min_version)),
        ats=v(tls_sec, "tls", "ats", bool, TlsRules.ats),
        distrusted_issuers=tuple(
            s for s, _ in reader.str_list(tls_sec, "tls", "distrusted_issuers")
        ) if "distrusted_issuers" in tls_sec else TlsRules.distrusted_issuers,
    )
    if tls.min_version not in ("1.0", "1.1", "1.2", "1.3"):
        reader.problem(tls_sec.key_lines.get("min_version"), "tls.min_version",
                       f"must be \"1.0\", \"1.1\", \"1.2\" or \"1.3\", not {tls.min_version!r}")
    log_sec = reader.section(top.get("log"), "log", LOG_KEYS, top.key_lines.get("log", 1))
    log = LogConfig(
        path=v(log_sec, "log", "path", str, LogConfig.path),
        console=v(log_sec, "log", "console", str, LogConfig.console,
                  choices=("pretty", "json", "off")),
        max_field_bytes=v(log_sec, "log", "max_field_bytes", int, LogConfig.max_field_bytes,
                          minimum=64),
    )
    control = reader.section(top.get("control"), "control", CONTROL_KEYS,
                             top.key_lines.get("control", 1))

    passthrough = []
    for pattern, line in reader.str_list(top, "", "passthrough"):
        try:
            re.compile(pattern)
            passthrough.append(pattern)
        except re.error as exc:
            reader.problem(line, "passthrough", f"'{pattern}' is not a valid regex: {exc}")

    apps: list[AppConfig] = []
    apps_node = top.get("apps")
    if isinstance(apps_node, MarkedList):
        for i, (node, line) in enumerate(zip(apps_node, apps_node.item_lines, strict=True)):
            app = _app(reader, node, line, i, base, rules)
            if app:
                if any(a.appid == app.appid for a in apps):
                    reader.problem(line, f"apps[{i}].appid", f"{app.appid} is listed twice")
                apps.append(app)
    elif apps_node is not None:
        reader.problem(top.key_lines.get("apps"), "apps", f"must be a list, not {_kind(apps_node)}")

    faults_node = top.get("faults")
    faults: list[Fault] = []
    windows: list[BackgroundWindow] = []
    if isinstance(faults_node, MarkedList):
        for i, (node, line) in enumerate(zip(faults_node, faults_node.item_lines, strict=True)):
            lines = node.key_lines if isinstance(node, MarkedDict) else {}

            def report(key: str, message: str, i: int = i, line: int = line,
                       lines: dict[Any, int] = lines) -> None:
                where = lines.get(key.split(".")[0], line)
                reader.problem(where, f"faults[{i}]" + (f".{key}" if key else ""), message)

            parsed = parse_fault(node, report)
            if isinstance(parsed, BackgroundWindow):
                if not any(a.appid == parsed.appid for a in apps):
                    report("background.appid", f"{parsed.appid} is not a configured app")
                windows.append(parsed)
            elif parsed is not None:
                faults.append(parsed)
    elif faults_node is not None:
        reader.problem(top.key_lines.get("faults"), "faults",
                       f"must be a list, not {_kind(faults_node)}")

    config = Config(
        mode=v(top, "", "mode", str, Config.mode, choices=("enforce", "report")),
        scope=v(top, "", "scope", str, Config.scope, choices=("miniprogram", "all")),
        allow_lan_ip=v(top, "", "allow_lan_ip", bool, Config.allow_lan_ip),
        passthrough=tuple(passthrough),
        resolve=_resolve(reader, top),
        block_with=v(top, "", "block_with", str, Config.block_with,
                     choices=("fail", "response")),
        apps=tuple(apps),
        limits=limits,
        rules=rules,
        tls=tls,
        faults=tuple(faults),
        background_windows=tuple(windows),
        seed=v(top, "", "seed", int, Config.seed),
        log=log,
        control_token=v(control, "control", "token", str, Config.control_token),
        clients=_clients(reader, top),
        local_destinations=v(top, "", "local_destinations", bool, Config.local_destinations),
        source=file,
        warnings=tuple(reader.warnings),
    )
    return config, reader.problems


def check_config(path: str | Path) -> tuple[Config, list[Problem]]:
    """Read and validate: the Config and every problem; ConfigError(unreadable=True) when the
    file can't be read or parsed at all."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([Problem(file, None, "(file)", "does not exist")], True) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(file, None, "(file)", f"cannot be read: {exc}")],
                          True) from None
    try:
        data = load_marked(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([Problem(file, line, "(yaml)", f"is not valid YAML: {reason}")],
                          True) from None
    return parse_config(data, file)


def load_config(path: str | Path) -> Config:
    """A usable Config, or ConfigError with every problem."""
    config, problems = check_config(path)
    if problems:
        raise ConfigError(problems)
    return config
