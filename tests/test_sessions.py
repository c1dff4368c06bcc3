"""SessionService through the generated stubs: create, get, list with paging, delete."""

from __future__ import annotations

import base64
import time

import grpc
import pytest
from providers import ScriptedProvider
from server_harness import expect_error, running_server

from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import image_service_pb2 as image_pb2
from aigen.v1 import session_service_pb2 as session_pb2
from aigen.v1 import types_pb2

pytestmark = pytest.mark.both_stores


def _providers():
    return [ScriptedProvider("alpha"), ScriptedProvider("beta")]


async def test_create_session_ids_status_and_defaults(tmp_path):
    async with running_server(tmp_path, _providers()) as h:
        ids = set()
        for _ in range(5):
            session = await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="p"))
            assert session.status == "ready"
            assert session.project == "p"
            assert session.mode == "single"
            assert session.session_id.startswith("sess_")
            suffix = session.session_id.removeprefix("sess_")
            raw = base64.urlsafe_b64decode(suffix + "=" * (-len(suffix) % 4))
            assert len(raw) * 8 >= 128
            ids.add(session.session_id)
        assert len(ids) == 5

        default = await h.sessions.CreateSession(session_pb2.CreateSessionRequest())
        assert default.project == "default"
        layered = await h.sessions.CreateSession(session_pb2.CreateSessionRequest(mode="layered"))
        assert layered.mode == "layered"


async def test_create_session_stores_aliases_and_config(tmp_path):
    async with running_server(tmp_path, _providers()) as h:
        story = await h.sessions.CreateSession(
            session_pb2.CreateSessionRequest(config=types_pb2.SessionConfig(aspect_ratio="story"))
        )
        feed = await h.sessions.CreateSession(
            session_pb2.CreateSessionRequest(config=types_pb2.SessionConfig(aspect_ratio="feed"))
        )
        assert story.config.aspect_ratio == "9:16"
        assert feed.config.aspect_ratio == "4:5"
        stored_story = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=story.session_id))
        stored_feed = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=feed.session_id))
        assert stored_story.config.aspect_ratio == "9:16"
        assert stored_feed.config.aspect_ratio == "4:5"

        config = types_pb2.SessionConfig(
            image_size="2k",
            provider="beta",
            model="beta-1",
            fallback_chain=[types_pb2.ModelRef(provider="alpha", model="alpha-1")],
        )
        session = await h.sessions.CreateSession(session_pb2.CreateSessionRequest(config=config))
        stored = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=session.session_id))
        assert stored.config.image_size == "2K"
        assert (stored.config.provider, stored.config.model) == ("beta", "beta-1")
        assert [(r.provider, r.model) for r in stored.config.fallback_chain] == [("alpha", "alpha-1")]


async def test_create_session_validates_config(tmp_path):
    cases = [
        (types_pb2.SessionConfig(aspect_ratio="7:3"), "config.aspectRatio"),
        (types_pb2.SessionConfig(image_size="8K"), "config.imageSize"),
        (types_pb2.SessionConfig(provider="nope"), "config.provider"),
        (types_pb2.SessionConfig(provider="alpha", model="nope"), "config.model"),
        (
            types_pb2.SessionConfig(fallback_chain=[types_pb2.ModelRef(provider="nope", model="x")]),
            "config.fallbackChain[0].provider",
        ),
    ]
    async with running_server(tmp_path, _providers()) as h:
        for config, field in cases:
            error = await expect_error(h.sessions.CreateSession(session_pb2.CreateSessionRequest(config=config)))
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT, field
            assert error.reason == "INVALID_INPUT"
            assert error.fields == (field,)
        listed = await h.sessions.ListSessions(session_pb2.ListSessionsRequest())
        assert list(listed.sessions) == []


async def test_get_session_reports_current_image_turns_and_times(tmp_path):
    async with running_server(tmp_path, _providers()) as h:
        before = time.time()
        session = await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="p"))
        fresh = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=session.session_id))
        assert not fresh.HasField("current_image")
        assert fresh.turn_count == 0
        assert fresh.status == "ready"
        created = fresh.create_time.ToNanoseconds() / 1e9
        assert before - 1 <= created <= time.time() + 1

        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=session.session_id, prompt="a cat"))
        got = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=session.session_id))
        image = got.current_image
        assert image.image_id == result.image_id
        assert image.url == result.url
        assert image.url.endswith(f"/images/{result.image_id}")
        assert image.content_type == "image/png"
        assert image.size_bytes == len(result.data)
        assert (image.width, image.height) == (1024, 1024)
        assert not image.data
        assert got.turn_count == 1
        assert got.status == "ready"
        assert got.update_time.ToNanoseconds() >= got.create_time.ToNanoseconds()
        assert got.update_time.ToNanoseconds() > fresh.update_time.ToNanoseconds()

        await h.generation.Iterate(gen_pb2.IterateRequest(session_id=session.session_id, instructions="red"))
        again = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=session.session_id))
        assert again.turn_count == 2
        assert again.current_image.image_id != result.image_id


async def test_list_sessions_pages_and_filters_by_project(tmp_path):
    async with running_server(tmp_path, _providers()) as h:
        created = []
        for _ in range(5):
            session = await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="paged"))
            created.append(session.session_id)
        for _ in range(2):
            await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="other"))

        seen: list[session_pb2.Session] = []
        token = ""
        pages = 0
        while True:
            page = await h.sessions.ListSessions(
                session_pb2.ListSessionsRequest(project="paged", page_size=2, page_token=token)
            )
            pages += 1
            assert len(page.sessions) <= 2
            seen.extend(page.sessions)
            token = page.next_page_token
            if not token:
                break
            assert pages < 10
        assert pages == 3
        assert [s.session_id for s in seen] == list(reversed(created))  # newest first, no repeats
        assert {s.project for s in seen} == {"paged"}
        times = [s.create_time.ToNanoseconds() for s in seen]
        assert times == sorted(times, reverse=True)

        everything = await h.sessions.ListSessions(session_pb2.ListSessionsRequest())
        assert len(everything.sessions) == 7
        assert not everything.next_page_token
        other = await h.sessions.ListSessions(session_pb2.ListSessionsRequest(project="other"))
        assert len(other.sessions) == 2
        none = await h.sessions.ListSessions(session_pb2.ListSessionsRequest(project="missing"))
        assert list(none.sessions) == []


async def test_list_sessions_shows_current_image(tmp_path):
    async with running_server(tmp_path, _providers()) as h:
        session = await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="p"))
        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=session.session_id, prompt="x"))
        listed = await h.sessions.ListSessions(session_pb2.ListSessionsRequest(project="p"))
        assert [s.current_image.image_id for s in listed.sessions] == [result.image_id]
        assert listed.sessions[0].turn_count == 1


async def test_delete_session_removes_history_and_images(tmp_path):
    async with running_server(tmp_path, _providers()) as h:
        session = await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="p"))
        keep = await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="p"))
        sid = session.session_id
        first = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="one"))
        second = await h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions="two"))
        kept = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=keep.session_id, prompt="kept"))
        await h.images.GetImage(image_pb2.GetImageRequest(image_id=first.image_id))

        await h.sessions.DeleteSession(session_pb2.DeleteSessionRequest(session_id=sid))

        for call in (
            h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid)),
            h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid)),
            h.sessions.DeleteSession(session_pb2.DeleteSessionRequest(session_id=sid)),
            h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="again")),
        ):
            error = await expect_error(call)
            assert error.code == grpc.StatusCode.NOT_FOUND
            assert error.reason == "SESSION_NOT_FOUND"
        for image_id in (first.image_id, second.image_id):
            error = await expect_error(h.images.GetImage(image_pb2.GetImageRequest(image_id=image_id)))
            assert error.code == grpc.StatusCode.NOT_FOUND
            assert error.reason == "IMAGE_NOT_FOUND"

        body = await h.images.GetImage(image_pb2.GetImageRequest(image_id=kept.image_id))
        assert body.data == kept.data
        listed = await h.sessions.ListSessions(session_pb2.ListSessionsRequest())
        assert [s.session_id for s in listed.sessions] == [keep.session_id]
