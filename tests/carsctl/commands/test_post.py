"""`carsctl post`: add and import posts (de-duplicated), show one, list the newest; clear errors."""

import json

import pytest

from tests.carsctl.cli import invoke


def test_posts_are_added_once_shown_and_listed(db, settings, tmp_path) -> None:
    added = invoke("post", "add", "--channel", "@cars_msk", "--text", "Продам [b]Kia Rio[/b] 2017", "--message-id",
                   "5", "--no-process", "--json")
    assert added.exit_code == 0, added.output
    [row] = json.loads(added.stdout)
    assert row["created"] and row["task_id"] is None
    ads = tmp_path / "ads.jsonl"
    ads.write_text('{"channel": "@cars_msk", "message_id": 5, "text": "again"}\n'
                   '{"channel": "@cars_spb", "text": "Продам Lada Vesta"}\n')
    imported = json.loads(invoke("post", "import", str(ads), "--no-process", "--json").stdout)
    assert [r["created"] for r in imported] == [False, True] and imported[0]["post_id"] == row["post_id"]

    shown = json.loads(invoke("post", "show", str(row["post_id"]), "--json").stdout)
    assert (shown["channel"], shown["message_id"], shown["status"], shown["car"]) == ("cars_msk", 5, "new", None)
    table = invoke("post", "show", str(row["post_id"])).stdout
    assert f"Post {row['post_id']}" in table and "cars_msk" in table and "new" in table
    listed = json.loads(invoke("post", "list", "--status", "new", "--json").stdout)
    assert [r["channel"] for r in listed] == ["cars_spb", "cars_msk"]


def test_an_unknown_post_or_status_is_one_line(db, settings) -> None:
    missing = invoke("post", "show", "424242")
    assert missing.exit_code == 1 and "no post with id 424242" in missing.stderr
    bad = invoke("post", "list", "--status", "nope")
    assert bad.exit_code == 2 and "unknown status 'nope'" in bad.stderr and "published" in bad.stderr


def test_an_import_with_invalid_lines_stores_nothing_and_names_them(db, settings, tmp_path) -> None:
    ads = tmp_path / "ads.jsonl"
    ads.write_bytes(b'\xef\xbb\xbf{"channel": "@cars_msk", "message_id": 1, "text": "Kia Rio"}\n'
                    b'{"channel": "@cars_msk", "message_id": "abc", "text": "x"}\n'
                    b'{"channel": "@cars_msk", "text": "caf\xe9"}\n'
                    b'{"channel": "@cars_msk", "message_id": 2, "text": "Lada"}\n')
    refused = invoke("post", "import", str(ads), "--no-process")
    assert refused.exit_code == 2, refused.output
    assert f"{ads}:2: message_id: Input should be a valid integer (got 'abc')" in refused.stderr
    assert f"{ads}:3: not UTF-8 text" in refused.stderr
    assert "2 invalid line(s)" in refused.stderr and "nothing stored" in refused.stderr
    assert json.loads(invoke("post", "list", "--json").stdout) == []

    skipped = invoke("post", "import", str(ads), "--no-process", "--skip-invalid", "--json")
    assert skipped.exit_code == 0, skipped.output
    assert [row["created"] for row in json.loads(skipped.stdout)] == [True, True]
    assert "skipped 2 invalid line(s)" in skipped.stderr


@pytest.mark.parametrize(("content", "message"), [
    (b"\x00\x01\x02\xff binary", "binary file"),
    (b"not json at all\n", ":1: not valid JSON"),
    (b'{"text": "no channel"}\n', ":1: channel: required"),
    (b'{"channel": "@x", "text": "t", "message_id": 1e23}\n', ":1: message_id: Input should be a valid integer"),
])
def test_bad_import_files_are_usage_errors(db, settings, tmp_path, content, message) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    result = invoke("post", "import", str(path), "--no-process")
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "internal error" not in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("post", "add", "--channel", "cars", "--text", "x", "--no-process"), "channel must be @name"),
    (("post", "add", "--channel", "@x", "--text", " ", "--no-process"), "text is empty"),
    (("post", "add", "--channel", "@x", "--text", "x", "--message-id", "99999999999999999999", "--no-process"),
     "message_id: Input should be less than or equal to 9223372036854775807"),
    (("post", "show", "99999999999999999999"), "Invalid value for 'POST_ID'"),
    (("post", "show", "0"), "Invalid value for 'POST_ID'"),
])
def test_out_of_range_post_input_is_a_usage_error(db, settings, args, message) -> None:
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_the_embedded_database_is_migrated_on_first_use(settings, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.chdir(tmp_path)
    added = invoke("post", "add", "--channel", "@cars_msk", "--text", "Продам Kia Rio", "--no-process", "--json")
    assert added.exit_code == 0, added.output
    assert (settings.home / "cars_bot.sqlite3").is_file()
    listed = invoke("post", "list", "--json")
    assert [row["channel"] for row in json.loads(listed.stdout)] == ["cars_msk"]
    assert invoke("db", "status").exit_code == 0


def test_a_database_behind_is_69_with_the_fix(settings, monkeypatch) -> None:
    from cars_bot.db import migrate

    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/behind")
    monkeypatch.setattr(migrate, "current_revision", lambda url: "0001")
    result = invoke("post", "list")
    assert result.exit_code == 69, result.output
    assert result.stderr == ("carsctl: error: the database schema is at revision 0001, this version needs "
                             f"{migrate.head_revision()} (run `carsctl db upgrade`)\n")


def test_database_errors_are_one_line(settings, monkeypatch, tmp_path) -> None:
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{broken}")
    result = invoke("post", "list")
    assert result.exit_code in (1, 69) and result.stderr.count("\n") == 1, result.output
    assert "database error: DatabaseError: file is not a database" in result.stderr and "SELECT" not in result.stderr


def test_db_upgrade_to_an_unknown_revision_is_a_usage_error(migrated_database, settings) -> None:
    result = invoke("db", "upgrade", "bogusrev")
    assert result.exit_code == 2, result.output
    assert "cannot upgrade to 'bogusrev': Can't locate revision identified by 'bogusrev'" in result.stderr


def test_the_quick_schema_check_finds_alembics_head() -> None:
    from cars_bot.db.migrate import head_revision, newest_revision_file

    assert newest_revision_file() == head_revision() is not None


def test_demo_checks_its_file_against_the_schema_first(settings, tmp_path) -> None:
    bad = tmp_path / "demo.jsonl"
    bad.write_bytes(b'{"channel": "@x", "text": "a"}\n{"channel": "@x", "text": "a", "media": "abc"}\n')
    result = invoke("demo", "--file", str(bad))
    assert result.exit_code == 2, result.output
    assert result.stderr == f"carsctl: error: {bad}:2: media: Input should be a valid list (got 'abc')\n"


@pytest.mark.redis
def test_waiting_without_a_terminal_prints_progress_lines_and_a_summary(db, settings, redis_client, tmp_path,
                                                                        monkeypatch) -> None:
    """Piped (no spinner): a line every PROGRESS_EVERY seconds while waiting, then one summary line."""
    import carsctl.commands.post as post_command

    monkeypatch.setattr(post_command, "PROGRESS_EVERY", 0.2)
    ads = tmp_path / "ads.jsonl"
    ads.write_text("".join(json.dumps({"channel": "@cars_msk", "message_id": n, "text": f"Продам Kia Rio {n}"}) + "\n"
                           for n in (1, 2, 3)))
    result = invoke("post", "import", str(ads), "--wait", "--timeout", "1")  # no worker: nothing finishes
    assert result.exit_code == 1, result.output
    assert "waiting: 3 new" in result.stderr
    assert "3 posts: 3 new in " in result.stderr.splitlines()[-1]
