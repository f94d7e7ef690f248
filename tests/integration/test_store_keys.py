"""Key encoding: any string is a legal, reversible Table Storage key part; EWS ItemIds work as
keys on Azurite."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devhost.azurite import Azurite
from shared.models import ID_PATTERN, BusyBlock
from shared.store import BusyBlockRepository
from shared.store.azure_tables import AzureTableService
from shared.store.keys import (
    InvalidKey,
    compose_key,
    decode_key_part,
    encode_key_part,
    split_key,
)

# What Table Storage refuses in keys: / \ # ? and control characters.
FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
EWS_ITEM_ID = (
    "AAMkADAwATM0MDAAMS1iNjU5LWExZjEtMDACLTAwCgBGAAAD+/eqoYQpy0S3Xl1zX+jRcwcAx/4Vq7Dh"
    "IkaqXf/HHpQNIAAAAgENAAAAx/4Vq7DhIkaqXf/HHpQNIAAAAAJ9AAAA"
)

any_text = st.text(alphabet=st.characters(codec="utf-8"))


@given(any_text)
def test_property_any_string_round_trips(raw: str) -> None:
    assert decode_key_part(encode_key_part(raw)) == raw


@given(any_text)
def test_property_encoded_part_has_no_forbidden_character_nor_separator(raw: str) -> None:
    encoded = encode_key_part(raw)
    assert not FORBIDDEN.search(encoded)
    assert "|" not in encoded
    assert encoded.isascii()


@given(st.lists(any_text, min_size=1, max_size=4))
def test_property_composite_keys_split_back_into_their_parts(parts: list[str]) -> None:
    assert split_key(compose_key(*parts)) == parts


@given(st.lists(any_text, min_size=1, max_size=3), st.lists(any_text, min_size=1, max_size=3))
def test_property_different_part_lists_never_share_a_key(a: list[str], b: list[str]) -> None:
    if a != b:
        assert compose_key(*a) != compose_key(*b)


@given(st.from_regex(ID_PATTERN, fullmatch=True))
def test_property_identifiers_stay_readable(identifier: str) -> None:
    assert encode_key_part(identifier) == identifier


def test_ews_item_id_characters_are_escaped() -> None:
    encoded = encode_key_part("a/b+c=!")
    assert encoded == "a!2Fb!2Bc!3D!21"
    assert decode_key_part(encoded) == "a/b+c=!"


def test_lone_surrogates_round_trip() -> None:
    assert decode_key_part(encode_key_part("x\ud800y")) == "x\ud800y"


@pytest.mark.parametrize("bad", ["a/b", "!2", "!zz", "a|b"])
def test_decoding_refuses_what_encoding_never_produces(bad: str) -> None:
    with pytest.raises(InvalidKey):
        decode_key_part(bad)


def test_row_keyed_by_a_real_looking_ews_item_id_on_azurite(
    azurite: Azurite, name_prefix: str
) -> None:
    blocks = BusyBlockRepository(
        AzureTableService.from_connection_string(azurite.connection_string, name_prefix)
    )
    block = BusyBlock(
        start=datetime(2026, 3, 2, 9, tzinfo=UTC),
        end=datetime(2026, 3, 2, 10, tzinfo=UTC),
        subject="Dentist",
        event_id=EWS_ITEM_ID,
        occurrence_id=EWS_ITEM_ID + "==/occ#1?",
    )
    blocks.put_block("acme", "staff/1", block)
    stored = blocks.get_block("acme", "staff/1", EWS_ITEM_ID, EWS_ITEM_ID + "==/occ#1?")
    assert stored is not None
    assert stored.value == block
    [listed] = blocks.blocks_of("acme", "staff/1")
    assert listed.value.event_id == EWS_ITEM_ID
    blocks.remove_block("acme", "staff/1", EWS_ITEM_ID, EWS_ITEM_ID + "==/occ#1?")
    assert blocks.blocks_of("acme", "staff/1") == []
