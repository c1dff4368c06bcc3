"""The `aigen` CLI in a subprocess against the real in-process server."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import signal
import sys
import zipfile
from dataclasses import dataclass

import pytest
from PIL import Image
from providers import Fail, Hang, ScriptedProvider, SlowProvider, profile
from server_harness import running_server, wait_ready
from test_client import guarded_server
from typer.testing import CliRunner

from aigen.client import AsyncClient
from aigen.client.cli import app
from aigen.server import errors
from aigen.server.providers.local import LocalProvider

pytestmark = pytest.mark.both_stores


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGEN_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    return env


async def start_cli(target: str, *args: str, cwd=None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aigen.client.cli",
        "--address",
        target,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
        cwd=cwd,
    )


async def cli(target: str, *args: str, cwd=None) -> Finished:
    process = await start_cli(target, *args, cwd=cwd)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return Finished(process.returncode, stdout.decode(), stderr.decode())


def target_of(harness) -> str:
    return f"127.0.0.1:{harness.server.port}"


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


# ------------------------------------------------------------------ help


@pytest.mark.no_server
def test_help_documents_every_command_and_the_exit_codes():
    runner = CliRunner()
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert top.exit_code == 0
    for command in ("serve", "generate", "iterate", "session", "history", "layers", "models", "providers"):
        assert command in top.output
    assert "5 provider not configured" in top.output and "130 interrupted" in top.output
    subcommands = [
        ["generate"],
        ["iterate"],
        ["history"],
        ["models"],
        ["providers"],
        ["serve"],
        *[["session", name] for name in ("create", "show", "list", "delete")],
        *[["layers", name] for name in ("separate", "lock", "unlock", "list", "export")],
    ]
    for words in subcommands:
        result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, words
        assert "Exit codes" in result.output, words
    generate_help = runner.invoke(app, ["generate", "--help"], env={"COLUMNS": "200"}).output
    for option in ("--provider", "--model", "--fallback", "--aspect", "--size", "--image-size", "--ref", "--session"):
        assert option in generate_help


# ------------------------------------------------------------------ flows


async def test_session_generate_iterate_history(tmp_path):
    async with running_server(tmp_path, [LocalProvider()], default_provider="local", default_model="local") as h:
        target = target_of(h)
        created = await cli(target, "session", "create", "--project", "cli", "--aspect", "16:9")
        assert created.code == 0, created.stderr
        session_id = created.stdout.strip()
        assert session_id.startswith("sess_")

        out = tmp_path / "images" / "first.png"
        generated = await cli(target, "generate", "Blue planet with rings", "--session", session_id, "-o", str(out))
        assert generated.code == 0, generated.stderr
        assert f"saved {out}" in generated.stdout and "local/local" in generated.stdout
        width, height = png_size(out)
        assert width > height

        edited = tmp_path / "second.png"
        ref = tmp_path / "ref.png"
        Image.new("RGB", (24, 24), (0, 200, 0)).save(ref)
        iterated = await cli(target, "iterate", session_id, "Make it red", "-o", str(edited), "--ref", str(ref))
        assert iterated.code == 0, iterated.stderr
        assert png_size(edited) == (width, height)

        history = await cli(target, "history", session_id, "--json")
        turns = history.json_lines()[0]
        assert [(t["kind"], t["status"]) for t in turns] == [("generate", "completed"), ("iterate", "completed")]
        shown = await cli(target, "session", "show", session_id)
        assert "16:9" in shown.stdout and "turns" in shown.stdout
        listed = await cli(target, "session", "list", "--project", "cli", "--json")
        assert [s["session_id"] for s in listed.json_lines()[0]["sessions"]] == [session_id]

        sessionless = await cli(target, "generate", "A lighthouse", "--aspect", "9:16", cwd=tmp_path)
        assert sessionless.code == 0, sessionless.stderr
        saved = [p for p in tmp_path.glob("img_*.png")]
        assert len(saved) == 1 and png_size(saved[0])[1] > png_size(saved[0])[0]

        deleted = await cli(target, "session", "delete", session_id)
        assert deleted.code == 0
        gone = await cli(target, "session", "show", session_id)
        assert gone.code == 3 and "SESSION_NOT_FOUND" in gone.stderr


async def test_models_and_providers(tmp_path):
    async with running_server(tmp_path, [LocalProvider(), ScriptedProvider("alpha", is_configured=False)]) as h:
        providers = await cli(target_of(h), "providers")
        assert providers.code == 0
        assert "SCRIPTED_API_KEY" in providers.stdout and "local" in providers.stdout
        models = await cli(target_of(h), "models", "--json")
        assert {m["model"] for m in models.json_lines()[0]} == {"local", "alpha-1"}


async def test_layers_commands(tmp_path):
    async with running_server(tmp_path, [LocalProvider()], default_provider="local", default_model="local") as h:
        target = target_of(h)
        async with AsyncClient(target) as client:
            session = await client.create_session("cli", "layered")
            await client.generate(session.session_id, "A red circle on a poster", seed=5)
        separated = await cli(target, "layers", "separate", session.session_id, "--count", "3", "--json")
        assert separated.code == 0, separated.stderr
        layers = separated.json_lines()[0]["layers"]
        layer_id = layers[-1]["layer_id"]
        locked = await cli(target, "layers", "lock", session.session_id, layer_id)
        assert locked.code == 0 and f"locked {layer_id}" in locked.stdout
        listed = await cli(target, "layers", "list", session.session_id, "--json")
        assert [x["locked"] for x in listed.json_lines()[0]["layers"] if x["layer_id"] == layer_id] == [True]
        unlocked = await cli(target, "layers", "unlock", session.session_id, layer_id)
        assert unlocked.code == 0
        archive = tmp_path / "stack.zip"
        exported = await cli(target, "layers", "export", session.session_id, "-o", str(archive))
        assert exported.code == 0
        with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as bundle:
            assert len([n for n in bundle.namelist() if n.endswith(".png")]) == len(layers)
        missing = await cli(target, "layers", "lock", session.session_id, "lyr_missing")
        assert missing.code == 3


# ------------------------------------------------------------------ progress


async def test_progress_lines_appear_before_completion(tmp_path):
    slow = SlowProvider("alpha", 3.0, model_profiles=(profile("alpha", "alpha-1", typical_latency_s=3.0),))
    async with running_server(tmp_path, [slow]) as h:
        out = tmp_path / "slow.png"
        process = await start_cli(target_of(h), "generate", "A slow lighthouse", "-o", str(out))
        line = ""
        while "running" not in line:
            line = (await asyncio.wait_for(process.stderr.readline(), 10)).decode()
            assert line, "the CLI ended before showing progress"
        assert not slow.completed, "progress must show while the provider still works"
        assert "~" in line and "est." in line and "alpha/alpha-1" in line
        stdout, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0
        assert slow.completed and png_size(out) == (1024, 1024)
        assert f"saved {out}" in stdout.decode()


async def test_a_terminal_gets_a_live_bar_with_the_fallback_above_it(tmp_path):
    """stderr on a pseudo-terminal: the rich bar (cursor hidden, redrawn in place), then removed."""
    alpha = ScriptedProvider("alpha", script=[Fail(errors.ProviderUnavailable("down"))])
    beta = SlowProvider("beta", 2.0, model_profiles=(profile("beta", "beta-1", typical_latency_s=2.0),))
    async with running_server(tmp_path, [alpha, beta]) as h:
        out = tmp_path / "tty.png"
        leader, follower = pty.openpty()
        process = None
        try:
            process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "aigen.client.cli", "--address", target_of(h)),
                *("generate", "x", "-o", str(out), "--fallback", "beta/beta-1"),
                stdout=asyncio.subprocess.PIPE,
                stderr=follower,
                env={**cli_env(), "TERM": "xterm"},
            )
            os.close(follower)
            follower = -1
            screen = await asyncio.wait_for(asyncio.to_thread(_read_until_closed, leader), 60)
            stdout = await asyncio.wait_for(process.stdout.read(), 30)
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            if process is not None and process.returncode is None:
                process.kill()  # its end of the terminal closes, so a pending read returns
                await process.wait()
            os.close(leader)
            if follower >= 0:
                os.close(follower)
        assert beta.completed and png_size(out) == (1024, 1024)
        assert f"saved {out}" in stdout.decode()
        assert "\x1b[?25l" in screen and "\x1b[?25h" in screen  # a live display hid, then restored the cursor
        assert "↪ falling back to beta/beta-1" in screen
        redraws = [frame for frame in screen.split("\r") if "running" in frame and "beta/beta-1" in frame]
        assert len(redraws) >= 2, screen  # the bar was redrawn while the provider worked
        assert "━" in redraws[-1] and "est." in redraws[-1]


def _read_until_closed(fd: int) -> str:
    """Everything written to a pseudo-terminal until its last writer closes it."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: no writer left
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


async def test_json_events_and_fallback(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(errors.ProviderUnavailable("down"))])
    beta = SlowProvider("beta", 1.2, model_profiles=(profile("beta", "beta-1"),))
    async with running_server(tmp_path, [alpha, beta]) as h:
        out = tmp_path / "json.png"
        finished = await cli(target_of(h), "generate", "x", "-o", str(out), "--fallback", "beta/beta-1", "--json")
        assert finished.code == 0, finished.stderr
        events = finished.json_lines()
        phases = [e["phase"] for e in events]
        assert phases[0] == "queued" and phases[-1] == "completed" and "fallback" in phases
        running = [e for e in events if e["phase"] == "running" and e["attempt"]["provider"] == "beta"]
        assert running and all(e["percent_estimated"] for e in running)
        result = events[-1]["result"]
        assert result["fallback_used"] == {"provider": "beta", "model": "beta-1"} and "data" not in result
        assert png_size(out) == (result["width"], result["height"])


async def test_sigint_cancels_the_generation_on_the_server(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Hang()])
    async with running_server(tmp_path, [alpha]) as h:
        async with AsyncClient(target_of(h)) as client:
            session = await client.create_session("cli")
        process = await start_cli(target_of(h), "generate", "forever", "--session", session.session_id, "--json")
        while True:
            line = await asyncio.wait_for(process.stdout.readline(), 10)
            assert line, "the CLI ended before the generation ran"
            if json.loads(line)["phase"] == "running":
                break
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 15)
        assert process.returncode == 130
        await alpha.wait_cancelled()
        await wait_ready(h, session.session_id)


# ------------------------------------------------------------------ exit codes


async def test_exit_codes_per_error_class(tmp_path):
    hang = ScriptedProvider("hang", script=[Hang()])
    unconfigured = ScriptedProvider("unset", is_configured=False)
    down = ScriptedProvider("down", script=[Fail(errors.ProviderUnavailable("down"))])
    refusing = ScriptedProvider("refusing", script=[Fail(errors.ContentRefused("refused"))])
    limited = ScriptedProvider("limited", script=[Fail(errors.ProviderRateLimited("429", retry_after=5))])
    slow = SlowProvider("slow", 5.0, model_profiles=(profile("slow", "slow-1"),))
    providers = [hang, unconfigured, down, refusing, limited, slow]
    async with running_server(tmp_path, providers) as h:
        target = target_of(h)
        out = str(tmp_path / "x.png")

        invalid = await cli(target, "generate", "", "-o", out, "-p", "down", "-m", "down-1")
        assert invalid.code == 2 and "prompt" in invalid.stderr
        bad_fallback = await cli(target, "generate", "x", "--fallback", "nomodel")
        assert bad_fallback.code == 2 and "provider/model" in bad_fallback.stderr
        assert (await cli(target, "history", "sess_missing")).code == 3

        async with AsyncClient(target) as client:
            session = await client.create_session("cli")
            stream = client.stream_generate(session.session_id, "hold", provider="hang", model="hang-1")
            events = aiter(stream)
            await anext(events)
            busy = await cli(target, "generate", "x", "--session", session.session_id, "-p", "hang", "-m", "hang-1")
            stream.cancel()
        assert busy.code == 4 and "SESSION_BUSY" in busy.stderr

        not_configured = await cli(target, "generate", "x", "-p", "unset", "-m", "unset-1", "-o", out)
        assert not_configured.code == 5 and "SCRIPTED_API_KEY" in not_configured.stderr
        all_failed = await cli(target, "generate", "x", "-p", "down", "-m", "down-1", "-f", "refusing/refusing-1")
        assert all_failed.code == 6
        assert "down/down-1" in all_failed.stderr and "refusing/refusing-1" in all_failed.stderr
        rate_limited = await cli(target, "generate", "x", "-p", "limited", "-m", "limited-1", "--json")
        assert rate_limited.code == 8 and "retry after 5 s" in rate_limited.stderr
        failed_event = rate_limited.json_lines()[-1]
        assert failed_event["phase"] == "failed" and failed_event["error"]["retry_after"] == pytest.approx(5)
        deadline = await cli(target, "--deadline", "0.5", "generate", "x", "-p", "slow", "-m", "slow-1", "-o", out)
        assert deadline.code == 9
    unreachable = await cli("127.0.0.1:1", "--deadline", "2", "providers")
    assert unreachable.code == 1 and "aigen serve" in unreachable.stderr


@pytest.mark.no_server
async def test_auth_exit_code():
    async with guarded_server() as (target, servicer):
        anonymous = await cli(target, "session", "show", "sess_1")
        assert anonymous.code == 7 and "UNAUTHENTICATED" in anonymous.stderr
        allowed = await cli(target, "--api-key", "key-1", "--app-token", "app-1", "session", "show", "sess_1")
        assert allowed.code == 0 and "ready" in allowed.stdout
        assert servicer.metadata[-1]["authorization"] == "Bearer key-1"
