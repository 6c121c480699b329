"""The terminal client (`tether login`, `run`, `attach`, `chat`, `approve`, `cancel`, `tail`),
run as the real command against real servers: with --json for what scripts read, and in a
pseudo-terminal (pexpect) for what a person sees and types."""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pexpect
import pyte

from benchmarks.fake_llm import RunningFakeLLM
from tests.helpers.imports import server_modules
from tests.helpers.models import model_session
from tests.helpers.server import ROOT, SECRET, Api, Server, wait_until
from tests.test_model_agents import approval_request


class Term:
    """The `tether` command, with its own config directory (its own `tether login`)."""

    def __init__(self, config: Path, **env: str) -> None:
        self.config = config
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TETHER_CONFIG_DIR": str(config),
            "TETHER_SECRET": "",
            **env,
        }

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tether.cli", *args]

    def __call__(
        self, *args: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            env=self.env,
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def pty(self, *args: str, timeout: float = 60, size: tuple[int, int] = (50, 140)) -> Pty:
        return Pty(self.argv(*args), self.env, timeout, size)

    def login(self, server: Server) -> Term:
        # The URL `tether serve` prints carries the secret: a first-time user pastes it.
        done = self("login", f"{server.url}/#secret={SECRET}")
        assert done.returncode == 0, done.stderr
        return self


class Pty(pexpect.spawn):  # type: ignore[misc]
    """The command in a pseudo-terminal, with all it wrote kept, so the screen (and the
    scrollback) it leaves can be read as a terminal would show it (`screen()`)."""

    def __init__(
        self, argv: list[str], env: dict[str, str], timeout: float, size: tuple[int, int]
    ) -> None:
        super().__init__(
            argv[0], argv[1:], env=env, cwd=str(ROOT), dimensions=size,
            encoding="utf-8", timeout=timeout,
        )  # fmt: skip
        self.size = size
        self.written = io.StringIO()
        self.logfile_read = self.written

    def screen(self) -> str:
        rows, cols = self.size
        screen = pyte.HistoryScreen(cols, rows, history=10_000, ratio=0.5)
        pyte.Stream(screen).feed(self.written.getvalue())
        kept = ["".join(line[x].data for x in range(cols)) for line in screen.history.top]
        return "\n".join(line.rstrip() for line in [*kept, *screen.display])


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_login_keeps_the_sign_in_for_the_owner_only(make_server: Any, tmp_path: Path) -> None:
    server = make_server()
    term = Term(tmp_path / "cfg")
    refused = term("sessions")
    assert refused.returncode == 4 and "tether login" in refused.stderr
    wrong = term("login", server.url, "--stdin", stdin="not-the-secret\n")
    assert wrong.returncode == 4 and "wrong bootstrap secret" in wrong.stderr
    assert not (tmp_path / "cfg" / "credentials.json").exists()
    term.login(server)
    creds = tmp_path / "cfg" / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE(creds.parent.stat().st_mode) == 0o700
    saved = json.loads(creds.read_text())
    assert saved["default"] == server.url and SECRET not in creds.read_text()
    first = saved["servers"][server.url]["refresh_token"]
    listed = term("sessions", "--json")
    assert listed.returncode == 0 and listed.stdout == "", listed.stderr
    # The refresh token rotated, and the new one was kept.
    assert json.loads(creds.read_text())["servers"][server.url]["refresh_token"] != first
    out = term("logout")
    assert out.returncode == 0, out.stderr
    assert server.url not in json.loads(creds.read_text())["servers"]
    assert term("sessions").returncode == 4


def test_commands_run_side_by_side_share_one_rotating_sign_in(
    make_server: Any, tmp_path: Path
) -> None:
    # No grace for a traded refresh token: a token traded twice ends the sign-in at once,
    # so only the credentials file's lock keeps eight commands at once signed in.
    server = make_server(TETHER_REFRESH_GRACE_S="0")
    term = Term(tmp_path / "cfg").login(server)
    procs = [term.popen("sessions", "--json") for _ in range(8)]
    results = [(p.wait(60), p.stderr.read() if p.stderr else "") for p in procs]
    assert [rc for rc, _ in results] == [0] * 8, results
    again = term("sessions", "--json")
    assert again.returncode == 0, again.stderr


def test_run_follows_a_task_through_kill_9_and_2_s_tokens_exactly(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(TETHER_ACCESS_TTL_S="2")
    api = Api(server.client())
    term = Term(tmp_path / "cfg").login(server)
    items = tmp_path / "input.json"
    items.write_text(json.dumps({"items": list(range(16)), "delay_s": 0.4}))
    proc = term.popen("run", "batch", "--input", f"@{items}", "--json", "--title", "nightly")
    assert proc.stdout is not None
    printed: list[dict[str, Any]] = []
    reader = threading.Thread(
        target=lambda: printed.extend(json.loads(line) for line in proc.stdout or [])
    )
    reader.start()
    wait_until(lambda: len(printed) >= 20, what="events printed")
    server.kill()  # kill -9 mid-task; the same port comes back
    server.start()
    assert proc.wait(180) == 0, proc.stderr.read() if proc.stderr else ""
    reader.join()
    sid = printed[0]["session_id"]
    assert printed == api.all_events(sid)  # every event once, in seq order, none left out
    assert [e["seq"] for e in printed] == list(range(1, len(printed) + 1))
    assert printed[-1]["type"] == "task.status" and printed[-1]["data"]["status"] == "completed"
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "Reconnecting" in stderr or "Offline" in stderr, stderr  # it said so, on stderr
    # The session was titled as asked; `tail --json --no-follow` prints the same log.
    tailed = term("tail", sid, "--json", "--no-follow")
    assert tailed.returncode == 0 and lines(tailed.stdout) == printed


def test_attach_draws_the_tree_and_ctrl_c_leaves_the_task_running(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server()
    api = Api(server.client())
    term = Term(tmp_path / "cfg").login(server)
    items = json.dumps({"items": list(range(12)), "delay_s": 1})
    started = term("run", "batch", "--input", items, "-d")
    assert started.returncode == 0, started.stderr
    task_id = started.stdout.strip()
    view = term.pty("attach", task_id)
    view.expect("● Live")
    view.expect(r"(\d+)/12")  # the batch's progress bar counts its items
    view.expect("sub-agents: ")
    view.sendintr()  # Ctrl-C
    view.expect("keeps running on the server")
    view.expect(f"To follow it again: tether attach {task_id}")
    view.expect(pexpect.EOF)
    view.close()
    assert view.exitstatus == 130
    assert api.task(task_id)["status"] == "running"  # detaching cancelled nothing
    # Attached again, it follows through a kill -9 and restart to the end, and its exit
    # code says how the task ended.
    again = term.pty("attach", task_id, timeout=90)
    again.expect("● Live")
    server.kill()
    again.expect("Reconnecting|Offline")
    server.start()
    again.expect("● Live")
    again.expect("12/12")
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 0
    assert api.task(task_id)["status"] == "completed"


def test_chat_streams_markdown_shows_sub_agents_and_answers_an_approval(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path)
    term = Term(tmp_path / "cfg").login(server)
    chat = term.pty("chat", sid, size=(16, 80))
    chat.expect("› ")
    # A reply taller than the screen streams in, and stays on it once (no frame of the
    # live view is left behind in the scrollback).
    chat.sendline("words 400")
    chat.expect("› ")
    assert chat.screen().count("to user turn 1: w0 w1") == 1
    assert chat.screen().count("w399") == 1
    chat.sendline("echo: some **bold** words")
    chat.expect("› ")
    # Drawn as markdown: the words in bold, not between asterisks.
    assert re.search(r"some \x1b\[[0-9;]*mbold\x1b\[[0-9;]*m words", chat.before), chat.before
    chat.sendline("delegate: first | second")
    chat.expect("handed to helper")
    chat.expect("helper completed")
    chat.expect("› ")
    chat.sendline("write notes.txt: draft")
    chat.expect("write_file")
    chat.expect("Approve\\?")
    chat.sendline("y looks fine")
    chat.expect("Done: ")
    chat.expect("› ")
    chat.sendline("/quit")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0
    request = approval_request(api, sid)
    (answered,) = api.c.get(f"/api/tasks/{request['task_id']}/approvals").json()["approvals"]
    assert answered["status"] == "approved" and answered["note"] == "looks fine"
    notes = api.c.get(f"/api/sessions/{sid}/files/notes.txt")
    assert notes.status_code == 200 and notes.text == "draft"


def test_approve_cancel_and_the_exit_codes_scripts_read(
    make_server: Any, fake_llm: RunningFakeLLM, tmp_path: Path
) -> None:
    server, api, sid = model_session(make_server, fake_llm, tmp_path)
    term = Term(tmp_path / "cfg", TETHER_RETRY_S="1").login(server)
    turn = api.c.post(f"/api/sessions/{sid}/messages", json={"text": "write a.txt: x"}).json()
    approval_request(api, sid)
    said = term("approve", turn["id"], "--deny", "--note", "not now", "--json")
    assert said.returncode == 0, said.stderr
    assert lines(said.stdout)[0]["status"] == "denied"
    twice = term("approve", turn["id"])
    assert twice.returncode == 5 and "no approval" in twice.stderr
    # A batch that fails exits 1; one cancelled exits 3; bad input 2; someone else's 5.
    failing = '{"items": ["fail"], "item_agent": "picky_item", "on_error": "fail"}'
    failed = term("run", "batch", "--session", sid, "--input", failing, "--json")
    assert failed.returncode == 1, failed.stderr
    long = term("run", "batch", "--input", '{"items": [1,2,3], "delay_s": 30}', "-d", "--json")
    (task,) = lines(long.stdout)
    waiting = term.popen("attach", task["id"], "--json")
    cancelled = term("cancel", task["id"], "--json")
    assert cancelled.returncode == 0 and lines(cancelled.stdout)[0]["id"] == task["id"]
    assert waiting.wait(60) == 3
    assert term("run", "batch", "--input", "{not json").returncode == 2
    before = lines(term("sessions", "--json").stdout)
    unknown = term("run", "no_such_agent", "--input", "{}")
    assert unknown.returncode == 2 and "no_such_agent" in unknown.stderr
    wrong = term("run", "batch", "--input", '{"items": 5}')
    assert wrong.returncode == 2 and "items: " in wrong.stderr, wrong.stderr  # which field
    assert lines(term("sessions", "--json").stdout) == before  # no empty session left
    # A pipe closed early (`| head -1`) ends the command quietly.
    piped = subprocess.run(
        f"{sys.executable} -m tether.cli tail {sid} | head -1",
        shell=True, env=term.env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert piped.stdout.startswith("#1 ") and piped.stderr == "", piped.stderr
    # ... also when nothing more is ever written: a quiet session, a reader gone at once.
    quiet = api.session()
    piped = subprocess.run(
        f"{sys.executable} -m tether.cli tail {quiet} | true",
        shell=True, env=term.env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
    assert term("attach", "t_0000000000000000").returncode == 5
    server.kill()
    down = term("sessions")
    assert down.returncode == 6 and "cannot reach" in down.stderr
    assert down.stderr.count("trying again for") == 1, down.stderr  # it said it waits, once


def test_the_terminal_commands_load_none_of_the_server() -> None:
    assert server_modules("tether.cli") == []


class NotTetherHandler(http.server.BaseHTTPRequestHandler):
    """Another service on the port: a page, whatever is asked (a proxy, a captive portal)."""

    def do_GET(self) -> None:
        body = b"<html><body>Welcome to the hotel wifi</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


def test_a_server_that_is_not_tether_and_a_config_dir_others_could_use(tmp_path: Path) -> None:
    page = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotTetherHandler)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    try:
        term = Term(tmp_path / "cfg")
        url = f"http://127.0.0.1:{page.server_address[1]}"
        done = term("login", f"{url}/#secret=x")
        assert done.returncode == 6 and "not a Tether server" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 2
    finally:
        page.shutdown()
    # A config dir open to others is closed to them; a link planted for the lock is refused.
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    nobody = Term(loose)("login", "http://127.0.0.1:9/#secret=x")  # (nothing listens there)
    assert nobody.returncode == 6 and "cannot reach" in nobody.stderr, nobody.stderr
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (loose / "credentials.json.lock").unlink()
    (loose / "credentials.json.lock").symlink_to(victim)
    planted = Term(loose)("login", "http://127.0.0.1:9/#secret=x")
    assert planted.returncode == 4 and "credentials.json.lock" in planted.stderr
    assert victim.read_text() == "mine"
