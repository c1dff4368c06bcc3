"""The admin command manages projects and keys in the data directory."""

from __future__ import annotations

import json

from aigen.server import admin


def run(capsys, *args: str) -> tuple[int, object]:
    code = admin.main(list(args))
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else out.err)


def test_projects_keys_and_usage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIGEN_DATA_DIR", str(tmp_path))
    code, project = run(capsys, "put", "acme", "--allow", "local,gemini", "--default", "local/local", "--public")
    assert code == 0
    assert project["allowedProviders"] == ["local", "gemini"] and project["allowPublicClients"] is True
    code, key = run(capsys, "key", "create", "acme")
    assert code == 0 and key["apiKey"].startswith("aig_")
    assert run(capsys, "list")[1][0]["projectId"] == "acme"
    assert run(capsys, "key", "revoke", "acme", key["keyId"])[0] == 0
    assert run(capsys, "usage", "acme") == (0, [])
    assert run(capsys, "delete", "acme")[0] == 0
    assert run(capsys, "list") == (0, [])


def test_refused_commands_name_the_problem(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIGEN_DATA_DIR", str(tmp_path))
    code, message = run(capsys, "put", "acme", "--allow", "nope")
    assert code == 2 and "allowedProviders" in message and "nope" in message
    code, message = run(capsys, "show", "missing")
    assert code == 2 and "not found" in message
