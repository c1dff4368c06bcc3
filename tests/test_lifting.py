"""Images decoded straight out of a JSON body: the same bytes and document as a full parse."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigen.server.providers.remote import LIFTED, lifted_bytes, loads_lifting

pytestmark = pytest.mark.no_server
IMAGE = bytes(range(256)) * 40
ENCODED = base64.b64encode(IMAGE).decode()


def test_the_image_is_decoded_from_the_body_and_the_document_keeps_the_rest():
    body = json.dumps({"created": 1, "data": [{"b64_json": ENCODED, "revised_prompt": "a fox"}]}).encode()
    document, image = loads_lifting(body, "b64_json")
    assert image == IMAGE
    assert document == {"created": 1, "data": [{"b64_json": LIFTED, "revised_prompt": "a fox"}]}
    assert lifted_bytes(document["data"][0]["b64_json"], image) == IMAGE


def test_spaces_around_the_colon():
    document, image = loads_lifting(b'{"b64_json" :\n "' + ENCODED.encode() + b'", "n": 2}', "b64_json")
    assert image == IMAGE and document == {"b64_json": LIFTED, "n": 2}


def test_the_key_quoted_inside_another_string_is_not_taken_for_the_field():
    body = json.dumps({"revised_prompt": 'say "b64_json":"QUJD"', "b64_json": ENCODED}).encode()
    document, image = loads_lifting(body, "b64_json")
    assert document["revised_prompt"] == 'say "b64_json":"QUJD"'
    assert lifted_bytes(document["b64_json"], image) == IMAGE


def test_the_first_match_elsewhere_leaves_the_wanted_field_to_a_plain_decode():
    body = json.dumps({"other": {"b64_json": "QUJD"}, "data": [{"b64_json": ENCODED}]}).encode()
    document, image = loads_lifting(body, "b64_json")
    assert image == b"ABC" and document["other"]["b64_json"] == LIFTED
    assert lifted_bytes(document["data"][0]["b64_json"], image) == IMAGE


def test_escaped_slashes_fall_back_to_the_plain_parse():
    body = json.dumps({"b64_json": ENCODED}).replace("/", "\\/").encode()
    assert b"\\/" in body
    document, image = loads_lifting(body, "b64_json")
    assert image is None and document == {"b64_json": ENCODED}
    assert lifted_bytes(document["b64_json"], image) == IMAGE


def test_invalid_base64_is_refused_as_before():
    document, image = loads_lifting(b'{"b64_json": "not base64!"}', "b64_json")
    assert image is None and document == {"b64_json": "not base64!"}
    with pytest.raises(ValueError):
        lifted_bytes(document["b64_json"], image)


def test_without_the_key_the_document_is_the_plain_parse():
    assert loads_lifting(b'{"error": {"message": "no"}}', "b64_json") == ({"error": {"message": "no"}}, None)
    with pytest.raises(orjson.JSONDecodeError):
        loads_lifting(b'{"b64_json": "QUJD"', "b64_json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    before=st.dictionaries(st.sampled_from(["created", "b64_json", "x", "data"]), json_values, max_size=3),
    image=st.binary(max_size=64),
    indent=st.sampled_from([None, 1]),
)
def test_any_document_reads_the_same_as_a_full_parse(before, image, indent):
    expected = {**before, "data": [{"b64_json": base64.b64encode(image).decode()}]}
    body = json.dumps(expected, indent=indent).encode()
    document, lifted = loads_lifting(body, "b64_json")
    assert lifted_bytes(document["data"][0]["b64_json"], lifted) == image
    assert differences(document, orjson.loads(body)) == ([lifted] if lifted is not None else [])


def differences(document: object, full: object) -> list[bytes]:
    """The decoded values `document` has LIFTED in place of; fails on any other difference."""
    if isinstance(document, dict) and isinstance(full, dict):
        assert document.keys() == full.keys()
        return [found for key in document for found in differences(document[key], full[key])]
    if isinstance(document, list) and isinstance(full, list):
        assert len(document) == len(full)
        return [found for pair in zip(document, full, strict=True) for found in differences(*pair)]
    if document == LIFTED and full != LIFTED:
        return [base64.b64decode(full, validate=True)]
    assert document == full
    return []
