"""The one schema of incoming posts: wrong types are refused with the field and the reason, a file's
bad lines are named by number, and text is capped when stored."""

from __future__ import annotations

import pytest

from cars_bot.post_input import MAX_INPUT_TEXT, PostInputError, channel_form, parse_post_lines, validate_post


@pytest.mark.parametrize(("record", "reason"), [
    ({"channel": "@x", "text": "a", "message_id": "abc"}, "message_id: Input should be a valid integer"),
    ({"channel": "@x", "text": "a", "message_id": 1.5}, "message_id: Input should be a valid integer"),
    ({"channel": "@x", "text": "a", "message_id": 1e23}, "message_id: Input should be a valid integer"),
    ({"channel": "@x", "text": "a", "message_id": True}, "message_id: Input should be a valid integer"),
    ({"channel": "@x", "text": "a", "message_id": 0}, "message_id: Input should be greater than or equal to 1"),
    ({"channel": "@x", "text": "a", "message_id": 2**63}, "message_id: Input should be less than or equal to"),
    ({"channel": "@x", "text": "a", "media": "abc"}, "media: Input should be a valid list"),
    ({"channel": "@x", "text": "a", "media": [{"message_id": "zz"}]}, "media.0.message_id"),
    ({"channel": "@x", "text": "a", "media": [{"file": "x.jpg"}]}, "unknown field 'media.0.file'"),
    ({"channel": "@x", "text": "a", "message_ids": [1, -2]}, "message_ids.1"),
    ({"channel": "@x", "text": "   "}, "text: text is empty"),
    ({"channel": "@x", "text": "a\x00b"}, "text contains a NUL character"),
    ({"channel": "@x", "text": "\ud800"}, "lone surrogate"),
    ({"channel": "@x", "text": "x" * (MAX_INPUT_TEXT + 1)}, "at most 100,000 are accepted"),
    ({"channel": "@x", "text": 5}, "text: Input should be a valid string"),
    ({"channel": "cars", "text": "a"}, "channel must be @name, https://t.me/name or a -100... chat id"),
    ({"channel": "@1abc", "text": "a"}, "a channel name is a letter"),
    ({"channel": "@x", "text": "a", "link": "javascript:alert(1)"}, "link: String should match pattern"),
    ({"channel": "@x", "text": "a", "extra": 1}, "unknown field 'extra'"),
    ({"text": "a"}, "channel: required"),
    (["@x", "a"], "expected a JSON object, got list"),
])
def test_wrong_records_are_refused_with_the_field_and_reason(record, reason) -> None:
    with pytest.raises(PostInputError) as refused:
        validate_post(record)
    assert reason in str(refused.value)
    assert "\n" not in str(refused.value)


def test_valid_records_are_normalised() -> None:
    post = validate_post({"channel": "https://t.me/Cars_MSK/12", "text": "Продам", "message_id": 2**63 - 1,
                          "media": [{"message_id": 5, "type": "photo", "channel": "t.me/src"}],
                          "message_ids": [5], "media_group_id": -7, "link": "https://t.me/Cars_MSK/12"})
    assert (post.channel, post.media[0].channel, post.message_id) == ("@Cars_MSK", "@src", 2**63 - 1)
    assert channel_form("-1001234567890") == "-1001234567890" and channel_form(" @cars_spb ") == "@cars_spb"


def test_a_file_names_each_bad_line_and_accepts_a_bom() -> None:
    data = (b'\xef\xbb\xbf{"channel": "@x", "text": "first"}\n'
            b'{"channel": "@x", "text": "caf\xe9"}\n'                 # latin-1
            b'{"channel": "@x", "text": \n'                          # malformed JSON
            b'\n'
            b'{"channel": "@x", "text": "ok", "message_id": 1e23}\n'
            b'{"channel": "@x", "text": "second", "message_id": 2}\n')
    parsed = parse_post_lines(data)
    assert [post.text for post in parsed.posts] == ["first", "second"] and parsed.lines == [1, 6]
    assert [(bad.line, bad.reason.split(" (")[0]) for bad in parsed.invalid] == [
        (2, "not UTF-8 text"), (3, "not valid JSON"), (5, "message_id: Input should be a valid integer")]


def test_a_binary_file_is_refused_whole() -> None:
    with pytest.raises(PostInputError, match="binary file"):
        parse_post_lines(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")


def test_long_text_is_cut_to_telegrams_limit_with_a_reason(db) -> None:
    from cars_bot.db.models import Post
    from cars_bot.posts import MAX_STORED_TEXT, store_post

    with db() as session:
        post, created = store_post(session, channel="@cars_msk", text="я" * 1_000_000, message_id=1)
        short, _ = store_post(session, channel="@cars_msk", text="short", message_id=2)
        session.commit()
        stored = session.get(Post, post.id)
        assert created and len(stored.text) == MAX_STORED_TEXT == 4096
        assert stored.status_reason == ("text cut to 4096 of its 1000000 characters at ingest "
                                        "(Telegram's message limit)")
        assert session.get(Post, short.id).status_reason is None
