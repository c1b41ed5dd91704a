"""The console over real HTTP (uvicorn on a free port, SQLite): who may reach what, CSRF,
files, login throttling, and the Vietnamese pages checked against the catalog."""

from __future__ import annotations

import hashlib
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from starlette.routing import Route

from roadside.central import i18n
from roadside.central.store import tables as T
from roadside.central.store.batch import Batch
from roadside.ids import new_id
from roadside.testing.console import CSRF, PASSWORDS, RunningConsole
from roadside.testing.messages import count, event_pair, health, status

ULID = "01HX0000000000000000000000"


def _fill(console: RunningConsole, device: str = "box-1", n: int = 5) -> list[str]:
    """A box with health and status, ``n`` car events and one person; returns event ids."""
    batch = Batch()
    now = time.time()
    batch.add_status(device, status("online"), now)
    batch.add_health(device, health(ob=3, tc=51.0, ck=1, ln=1, dk={"free": 2048.0}), now)
    ids = []
    for i in range(n):
        _start, end = event_pair(now - 600 + 60 * i, "car" if i < n - 1 else "person")
        batch.add_event(device, end, now)
        ids.append(end.id)
    batch.add_count(device, count(now - 300, {"car": 2}, {"left-lanes": {"car": {"N": 2}}}), now)
    console.store.writer().write(batch)
    return ids


def _stored_clip(
    console: RunningConsole, device: str, kind: str = "clip", params: dict | None = None
) -> tuple[str, Path]:
    """A file received for a request to ``device``, as the audit log and the transfer
    receiver record it; returns (request id, path)."""
    rq, xid = new_id(), new_id()
    folder = console.cfg.clips_path / device
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{device}_clip.mp4" if kind == "clip" else f"{device}_pic.jpg")
    data = bytes(range(256)) * 400
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    console.store.audit.open(rq, "lan", kind, device, params or {})
    console.store.clips.started(device, xid, kind, request_id=rq, name=path.name, size=len(data))
    console.store.clips.finished(device, xid, str(path), len(data), digest)
    return rq, path


def _csrf(client: httpx.Client) -> str:
    return CSRF.search(client.get("/boxes").text).group(1)  # type: ignore[union-attr]


def _audit_rows(console: RunningConsole) -> list[dict]:
    with console.store.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(T.audit)).mappings()]


def test_every_route_without_a_session_redirects_to_login_or_is_401(console: RunningConsole):
    public = {("/login", "GET"), ("/language", "GET"), ("/", "GET")}
    values = {"event_id": ULID, "request_id": ULID, "name": "a.mp4", "device": "box-1"}
    checked = 0
    with console.client() as c:
        for route in console.server.app.routes:
            if not isinstance(route, Route):
                continue
            path = route.path.format(**values)
            for method in sorted((route.methods or set()) - {"HEAD"}):
                r = c.request(method, path)
                checked += 1
                if (route.path, method) in public:
                    assert r.status_code in (200, 303), (method, path)
                    continue
                if (route.path, method) == ("/login", "POST"):
                    assert r.status_code == 403, r.text  # no login token: refused
                    continue
                if r.status_code == 303:
                    assert r.headers["location"].startswith("/login?next="), (method, path)
                else:
                    assert r.status_code == 401, (method, path, r.status_code)
        assert c.get("/", follow_redirects=True).url.path == "/login"
    assert checked >= 20


def test_roles_csrf_and_files(console: RunningConsole) -> None:
    ids = _fill(console)
    viewer = console.login("minh")
    lan = console.login("lan")
    # a viewer sees boxes, events and counts, but may not ask for footage or read the audit
    for path in ("/boxes", "/events", f"/events/{ids[0]}", "/counts"):
        assert viewer.get(path).status_code == 200, path
    assert viewer.get("/audit").status_code == 403
    assert viewer.get("/live/box-1").status_code == 403
    before = len(_audit_rows(console))
    r = viewer.post(f"/events/{ids[0]}/clip", data={"csrf": _csrf(viewer)})
    assert r.status_code == 403 and "Không được phép" in r.text
    # a form without its token, or with another session's, is refused and nothing is sent
    r = lan.post(f"/events/{ids[0]}/clip", data={})
    assert r.status_code == 403
    r = lan.post(f"/events/{ids[0]}/clip", data={"csrf": _csrf(viewer)})
    assert r.status_code == 403
    assert len(_audit_rows(console)) == before
    assert lan.get("/users").status_code == 403
    # files: by their record only, inside the clips folder, with ranges and their digest
    rq, path = _stored_clip(console, "box-1")
    whole = lan.get(f"/files/{rq}/{path.name}")
    assert whole.status_code == 200 and whole.content == path.read_bytes()
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    part = lan.get(f"/files/{rq}/{path.name}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == path.read_bytes()[100:200]
    down = lan.get(f"/files/{rq}/{path.name}?download=1")
    assert "attachment" in down.headers["content-disposition"]
    assert "sha-256=:" in down.headers["repr-digest"]
    assert viewer.get(f"/files/{rq}/{path.name}").status_code == 403  # a clip: investigators
    pic_rq, pic = _stored_clip(console, "box-1", "snapshot")
    assert viewer.get(f"/files/{pic_rq}/{pic.name}").status_code == 200
    secret = console.cfg.clips_path.parent / "secret.txt"
    secret.write_text("not footage")
    for name in ("..%2F..%2Fsecret.txt", "../secret.txt", "secret.txt", "other.mp4", "%2e%2e"):
        assert lan.get(f"/files/{rq}/{name}").status_code == 404, name
    assert lan.get(f"/files/..%2F{rq}/{path.name}").status_code == 404
    # a record pointing outside the clips folder is not served either
    xid = new_id()
    console.store.clips.started("box-1", xid, "clip", request_id="evil", name="secret.txt")
    console.store.clips.finished("box-1", xid, str(secret), 11, "0" * 64)
    assert lan.get("/files/evil/secret.txt").status_code == 404


def test_logins_pause_after_failures(console: RunningConsole):
    with console.client() as c:
        for attempt in range(3):
            token = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
            r = c.post("/login", data={"csrf": token, "name": "lan", "password": "wrong"})
            assert r.status_code == 401 and "Sai tên hoặc mật khẩu" in r.text, attempt
        token = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
        r = c.post("/login", data={"csrf": token, "name": "lan", "password": PASSWORDS["lan"]})
        assert r.status_code == 429 and "Đăng nhập sai quá nhiều lần" in r.text
        # the address is paused too: guessing other names from it gets nowhere
        token = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
        r = c.post("/login", data={"csrf": token, "name": "thu", "password": PASSWORDS["thu"]})
        assert r.status_code == 429
    failed = [r for r in _audit_rows(console) if r["action"] == "login-failed"]
    assert len(failed) == 3 and {r["requester"] for r in failed} == {"lan"}


def test_an_admin_disabling_an_account_ends_its_sessions(console: RunningConsole) -> None:
    viewer = console.login("minh")
    admin = console.login("thu")
    r = admin.post("/users/minh", data={"csrf": _csrf(admin), "change": "disable"})
    assert r.status_code == 303
    assert viewer.get("/boxes").status_code == 303
    r = admin.post("/users/thu", data={"csrf": _csrf(admin), "change": "disable"})
    assert r.status_code == 400  # not one's own
    r = admin.post(
        "/users",
        data={"csrf": _csrf(admin), "name": "hung", "role": "investigator", "password": "short"},
    )
    assert r.status_code == 400 and "ít nhất 10 ký tự" in r.text
    actions = [(r["requester"], r["action"]) for r in _audit_rows(console)]
    assert ("thu", "user") in actions
    admin.post("/logout", data={"csrf": _csrf(admin)})
    assert admin.get("/users").status_code == 303


class _Text(HTMLParser):
    """Text nodes and the visible attributes of a page (scripts and styles left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for key, value in attrs:
            if key in ("placeholder", "alt", "title", "aria-label") and value:
                self.texts.append(value.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.texts.append(" ".join(data.split()))


def _texts(html: str) -> list[str]:
    parser = _Text()
    parser.feed(html)
    return parser.texts


def _catalog_messages() -> set[str]:
    """Every message the code and templates mark for translation (as pybabel extracts)."""
    from babel.messages.extract import extract_from_dir

    root = Path(i18n.__file__).parent
    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    found = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(
        str(root),
        method_map,
        options_map={"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}},
        keywords={"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)},
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_message_has_a_vietnamese_translation() -> None:
    catalog = i18n.catalog("vi")
    missing = sorted(m for m in _catalog_messages() if m not in catalog)
    assert not missing, f"not in {i18n.catalog_path('vi')} (or fuzzy/empty): {missing}"
    for msgid, text in catalog.items():
        names = set(re.findall(r"%\((\w+)\)", msgid))
        forms = text if isinstance(text, tuple) else (text,)
        for form in forms:
            assert set(re.findall(r"%\((\w+)\)", form)) == names, (msgid, form)


def test_the_vietnamese_pages_have_no_english_left(console: RunningConsole) -> None:
    ids = _fill(console)
    rq, _path = _stored_clip(console, "box-1", "snapshot", {"event": ids[0]})
    with console.store.engine.begin() as conn:
        conn.execute(
            T.clips.update().where(T.clips.c.request_id == rq).values(meta={"event": ids[0]})
        )
    console.store.audit.update(rq, "done", result={"bytes": 1})
    pages = [
        "/boxes",
        "/events",
        "/events?cls=car",
        f"/events/{ids[0]}",
        f"/requests/{rq}",
        "/counts",
        "/audit",
        "/users",
        "/live/box-1",
        "/events?since=half+past+ten",
    ]
    english = {m for m in i18n.catalog("vi") if re.search(r"[A-Za-z]{3}", m)}
    english |= {m.rstrip(".") for m in english}
    shown_vi: dict[str, list[str]] = {}
    admin_vi, admin_en = console.login("thu", "vi"), console.login("thu", "en")
    lan_vi = console.login("lan", "vi")
    for path in pages:
        client = admin_vi if path == "/users" else lan_vi
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        texts = _texts(r.text)
        leftovers = [t for t in texts if t in english or t.strip(" ()·:") in english]
        assert not leftovers, (path, leftovers)
        shown_vi[path] = texts
    # Any sentence shown alike in both languages must be data (names, zones, numbers, ids,
    # times: the test data has box-1 and the zone left-lanes).
    data = re.compile(r"^[\d\s:/.,%°C()–·+-]*$|^box-1$|^left-lanes$|^[0-9A-Z]{26}$|^[0-9a-f]{64}$")
    allowed = {"English", "Tiếng Việt", "Roadside", "sha256", "s", "CSV"}
    for path in ("/boxes", "/events", f"/events/{ids[0]}", "/counts"):
        en = set(_texts(admin_en.get(path).text))
        same = [t for t in shown_vi[path] if t in en and not data.match(t) and t not in allowed]
        same = [t for t in same if re.search(r"[A-Za-z]{3}", t) and not t.startswith("sha256 ")]
        assert not same, (path, same)
    # the login page too, before any session
    with console.client() as c:
        texts = _texts(c.get("/login").text)
        assert "Đăng nhập" in texts and not [t for t in texts if t in english]


@pytest.mark.parametrize(
    "typed",
    ["14:05", "hôm qua 14:05", "2 giờ trước", "01/12/2026 14:05", "yesterday 10:14", "15m ago"],
)
def test_the_events_form_takes_what_officers_type(console: RunningConsole, typed: str) -> None:
    _fill(console)
    lan = console.login("lan")
    r = lan.get("/events", params={"since": typed})
    assert r.status_code == 200 and 'role="alert"' not in r.text, typed
    bad = lan.get("/events", params={"since": "half past ten"})
    assert "không phải là thời điểm" in bad.text


def test_the_console_speaks_https_with_a_station_web_certificate(tmp_path: Path) -> None:
    import ssl

    from click.testing import CliRunner
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from roadside.central.store import Store
    from roadside.central.web.server import WebServer
    from roadside.cli import main
    from roadside.testing.configs import central_config
    from roadside.testing.console import add_accounts
    from roadside.testing.ports import free_port

    secret = tmp_path / "pass"
    secret.write_text("a long enough passphrase\n")
    secret.chmod(0o600)
    env = {"ROADSIDE_CA_PASSPHRASE_FILE": str(secret)}
    ca, out = tmp_path / "ca", tmp_path / "web"
    runner = CliRunner()
    assert runner.invoke(main, ["provision", "ca", "init", str(ca)], env=env).exit_code == 0
    r = runner.invoke(
        main,
        ["provision", "web", "--ca", str(ca), "--host", "localhost", "--out", str(out)],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert (out / "web.key").stat().st_mode & 0o077 == 0
    cert = x509.load_pem_x509_certificate((out / "web.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]

    port = free_port()
    cfg = central_config(
        tmp_path,
        free_port(),
        web={
            "host": "127.0.0.1",
            "port": port,
            "tls_cert": str(out / "web.crt"),
            "tls_key": str(out / "web.key"),
        },
    )
    store = Store(cfg.database_url)
    add_accounts(store)
    trust = ssl.create_default_context(cafile=str(out / "ca.crt"))
    server = WebServer(cfg, store).start()
    url = f"https://localhost:{port}"
    with httpx.Client(base_url=url, verify=trust, timeout=30) as c:
        deadline = time.monotonic() + 20
        while True:
            try:
                page = c.get("/login")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the console did not answer over HTTPS"
                time.sleep(0.1)
        assert page.status_code == 200
        token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        r = c.post(
            "/login",
            data={"csrf": token, "name": "lan", "password": PASSWORDS["lan"], "next": "/"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/login", timeout=10)  # not trusted without the station CA
    server.stop()
    store.close()


def test_an_officer_is_told_why_a_request_waits_or_fails(broker, tmp_path: Path) -> None:
    """A box offline: the request is kept and the page says so. A box that answers with an
    error: the page says it in the officer's words, from the reason code."""
    from roadside.testing.clients import BoxThatAnswers
    from roadside.testing.console import running_console
    from roadside.testing.waiting import wait_until

    with running_console(tmp_path, broker.port) as console:
        ids = _fill(console, "box-r")
        lan = console.login("lan")
        batch = Batch()
        batch.add_status("box-r", status("offline", "lost"), time.time())
        console.store.writer().write(batch)
        r = lan.post(f"/events/{ids[0]}/clip", data={"csrf": _csrf(lan)})
        assert r.status_code == 303
        waiting = lan.get(r.headers["location"])
        assert "đang mất kết nối" in waiting.text and "sẽ chạy khi hộp kết nối lại" in waiting.text
        rq = r.headers["location"].rsplit("/", 1)[1]
        (row,) = [a for a in _audit_rows(console) if a["id"] == rq]
        assert row["requester"] == "lan" and row["state"] == "sent"
        assert row["params"]["event"] == ids[0] and row["params"]["from"] < row["params"]["to"]

        box = BoxThatAnswers(broker.port, "box-r")  # answers: no footage of that time
        try:
            r = lan.post(f"/events/{ids[1]}/clip", data={"csrf": _csrf(lan)})
            page = r.headers["location"]
            wait_until(
                lambda: "không còn giữ đoạn phim" in lan.get(page).text, 20, "the error shown"
            )
            with lan.stream("GET", page + "/progress") as events:
                lines = [line for line in events.iter_lines() if line.startswith("data: ")]
            final = json.loads(lines[-1].removeprefix("data: "))
            assert final["phase"] == "failed" and final["final"] and "ghi đè" in final["text"]
        finally:
            box.close()


def test_counts_show_each_counting_line_per_hour_by_class_and_direction(
    console: RunningConsole,
) -> None:
    hour = (time.time() // 3600 - 2) * 3600  # two hours ago, on the hour
    batch = Batch()
    for device, t0, lines in (
        ("box-1", hour + 60, {"north-gate": {"car": {"N": 3, "S": 1}}}),
        ("box-1", hour + 1800, {"north-gate": {"car": {"N": 2}}, "mid": {"bus": {"E": 1}}}),
        ("box-1", hour + 3600 + 5, {"mid": {"motorcycle": {"E": 4}}}),
        ("box-2", hour + 60, {"north-gate": {"car": {"N": 50}}}),  # another box's line
    ):
        batch.add_count(device, count(t0, {}, lines), time.time())
    console.store.writer().write(batch)
    lan = console.login("lan", "en")
    window = {"box": "box-1", "since": "3h ago", "until": "now"}
    page = lan.get("/counts", params=window)
    assert page.status_code == 200
    gate = page.text.split('id="chart-line-north-gate"')[1].split("</section>")[0]
    assert "Crossings of line north-gate per hour, by class and direction" in gate
    assert "total 6" in gate and "car → north" in gate and "car → south" in gate
    mid = page.text.split('id="chart-line-mid"')[1].split("</section>")[0]
    assert "total 5" in mid and "motorcycle → east" in mid
    vi = console.login("lan", "vi").get("/counts", params=window).text
    assert "Lượt qua vạch north-gate mỗi giờ" in vi

    csv_text = lan.get("/counts.csv", params=window).text
    rows = [line.split(",") for line in csv_text.strip().splitlines()]
    assert rows[0] == ["box", "hour", "series", "line", "class", "direction", "count"]
    lines = {(r[1], r[3], r[4], r[5]): int(r[6]) for r in rows[1:] if r[2] == "line"}
    first = time.strftime("%d/%m/%Y %H:%M", time.gmtime(hour + 7 * 3600))
    second = time.strftime("%d/%m/%Y %H:%M", time.gmtime(hour + 8 * 3600))
    assert lines == {
        (first, "north-gate", "car", "N"): 5,
        (first, "north-gate", "car", "S"): 1,
        (first, "mid", "bus", "E"): 1,
        (second, "mid", "motorcycle", "E"): 4,
    }
