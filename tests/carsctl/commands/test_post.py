"""`carsctl post`: add and import posts (de-duplicated), show one, list the newest; clear errors."""

import json

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
