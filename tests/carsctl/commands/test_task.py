"""`carsctl task`: names and arguments checked before sending, bulk dispatch, results, revoke, retry."""

from __future__ import annotations

import json
import uuid
from typing import Any, Optional

import pytest

from tests.carsctl.cli import invoke
from tests.carsctl.ops import priority_key, queued
from tests.workers import celery_worker

pytestmark = pytest.mark.redis


def stored_post(db: Any, text: str = "Продам BMW 3 серии 2015") -> int:
    from cars_bot.posts import store_post

    with db.begin() as session:
        post, _ = store_post(session, channel="@cars_msk", text=text)
        session.flush()
        return post.id


def all_messages(redis_client, queue="ai_processing") -> list[dict[str, Any]]:
    return [message for messages in queued(redis_client, queue).values() for message in messages]


def test_positional_arguments_are_converted_to_the_signature_types(celery_app_real, redis_client, db,
                                                                   settings) -> None:
    post_id = stored_post(db)
    result = invoke("task", "run", "process-post", str(post_id), "--json")
    assert result.exit_code == 0, result.output
    sent = json.loads(result.stdout)
    assert sent["args"] == [post_id] and sent["queue"] == "ai_processing"
    [message] = queued(redis_client, "ai_processing")[priority_key("ai_processing", sent["priority"])]
    assert message["args"] == [post_id] and message["headers"]["id"] == sent["id"]
    assert message["priority"] == sent["priority"]  # what is reported is what was sent


def test_options_reach_the_message(celery_app_real, redis_client, settings) -> None:
    result = invoke("task", "run", "cars_bot.tasks.monitoring_tasks.cleanup_old_results_task", "--kwarg",
                    "days_old=3", "--countdown", "10", "--priority", "7", "--queue", "default",
                    "--retry-policy", "max_retries=5,interval_start=1,interval_step=2,interval_max=30")
    assert result.exit_code == 0, result.output
    task_id = result.stdout.strip()
    [message] = queued(redis_client, "default")[priority_key("default", 7)]
    assert message["headers"]["id"] == task_id and message["kwargs"] == {"days_old": 3}
    assert message["headers"]["eta"] and message["priority"] == 7


@pytest.mark.parametrize(("args", "message"), [
    (("process-post", "abc"), "post_id: expected an integer, got 'abc'"),
    (("process-post", "1", "2"), "process-post takes 1 argument(s), got 2"),
    (("process-post",), "missing a required argument: 'post_id'"),
    (("proces-post", "1"), "did you mean process-post"),
    (("process-post", "1", "--kwarg", "nope=1"), "process-post has no parameter 'nope'"),
    (("process-post", "1", "--kwarg", "post_id"), "--kwarg expects KEY=VALUE"),
    (("process-post", "1", "--priority", "12"), "less than or equal to 9"),
    (("process-post", "1", "--countdown", "5", "--eta", "2030-01-01T00:00:00"), "--countdown or --eta"),
    (("process-post", "1", "--eta", "tomorrow"), "--eta expects an ISO date-time"),
    (("process-post", "1", "--retry-policy", "max_retrys=5"), "bad --retry-policy item"),
    (("process-post", "1", "--queue", "nope"), "unknown queue 'nope'"),
    (("process-post", "9223372036854775808"), "post_id: expected an integer from 1 to 2147483647"),
    (("process-post", "0"), "post_id: expected an integer from 1 to 2147483647"),
    (("cleanup-old-results", "-k", "days_old=-100000000"), "days_old: expected an integer from 1 to 36500"),
    (("cleanup-old-results", "-k", "days_old=99999999999"), "days_old: expected an integer from 1 to 36500"),
])
def test_bad_arguments_are_rejected_before_anything_is_sent(celery_app_real, redis_client, settings, args,
                                                            message) -> None:
    result = invoke("task", "run", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert redis_client.dbsize() == 0 or not any(queued(redis_client, q) for q in
                                                  ("ai_processing", "default", "monitoring"))


def test_values_follow_their_annotations() -> None:
    from carsctl.dispatch.arguments import convert_value
    from carsctl.errors import UsageError

    assert convert_value("7", int, "n") == 7
    assert convert_value("none", Optional[int], "n") is None  # noqa: UP045 - the old spelling must work too
    assert convert_value("5", int | None, "n") == 5
    assert convert_value("yes", bool, "flag") is True
    assert convert_value("[1, 2]", list[int], "ids") == [1, 2]
    assert convert_value('{"a": 1}', dict, "data") == {"a": 1}
    assert convert_value("42", Any, "x") == 42 and convert_value("hello", Any, "x") == "hello"
    assert convert_value("042", str, "text") == "042"
    with pytest.raises(UsageError, match="expected a JSON list"):
        convert_value("{}", list, "ids")


def test_bulk_dispatch_sends_one_task_per_line(celery_app_real, redis_client, db, settings, tmp_path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# posts to reprocess\n" + "\n".join(str(n) for n in range(1, 501)) + "\n\n")
    result = invoke("task", "run", "process-post", "--from-file", str(ids), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sent"] == 500 and len(set(report["ids"])) == 500
    messages = all_messages(redis_client)
    assert sorted(m["args"][0] for m in messages) == list(range(1, 501))
    assert {m["headers"]["id"] for m in messages} == set(report["ids"])
    single = json.loads(invoke("task", "run", "process-post", str(stored_post(db)), "--json").stdout)
    assert {m["priority"] for m in messages} == {report["priority"]} == {single["priority"]}  # as apply_async
    assert {m["headers"]["timelimit"][0] for m in messages} == {360}


def test_bulk_dispatch_reads_stdin_and_rejects_a_bad_line_before_sending(celery_app_real, redis_client,
                                                                         settings) -> None:
    ok = invoke("task", "run", "process-post", "--from-file", "-", "--priority", "4", input="7\n8\n")
    assert ok.exit_code == 0, ok.output
    assert sorted(m["args"][0] for m in queued(redis_client, "ai_processing")[priority_key("ai_processing", 4)]) \
        == [7, 8]
    bad = invoke("task", "run", "process-post", "--from-file", "-", input="1\n2\nthree\n")
    assert bad.exit_code == 2 and "-, task 3: post_id: expected an integer, got 'three'" in bad.stderr
    assert len(all_messages(redis_client)) == 2


@pytest.mark.timeout(30)
def test_result_of_an_unknown_id_says_so_at_once(celery_app_real, redis_client, settings, monkeypatch) -> None:
    # "At once": an unknown id is never waited for (how soon it answers is measured in bench/bench_ops.py).
    def never(*_args: Any, **_kwargs: Any) -> None:
        pytest.fail("waited for a task id that is known nowhere")  # a BaseException: passes the CLI's boundary

    monkeypatch.setattr("carsctl.dispatch.task_results.wait_for_result", never)
    result = invoke("task", "result", str(uuid.uuid4()), "--wait", "--timeout", "60")
    assert result.exit_code == 1 and "unknown task id" in result.stderr


def test_result_of_a_queued_task_says_where_it_waits(celery_app_real, redis_client, db, settings) -> None:
    task_id = invoke("task", "run", "process-post", str(stored_post(db))).stdout.strip()
    result = invoke("task", "result", task_id, "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["state"] == "PENDING" and info["known"] and info["location"] == "queued in ai_processing"
    revoked = invoke("task", "revoke", task_id)
    assert revoked.exit_code == 0 and "removed from queue ai_processing; it will not run" in revoked.stderr
    assert queued(redis_client, "ai_processing") == {}


@pytest.mark.parametrize("alias", ["process-post", "publish-post"])
def test_a_task_about_a_post_that_does_not_exist_is_not_sent(celery_app_real, redis_client, db, settings,
                                                              alias) -> None:
    missing = stored_post(db) + 1000
    result = invoke("task", "run", alias, str(missing), "--wait", "--timeout", "5")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"carsctl: error: no post {missing}: {alias} not sent")
    assert queued(redis_client, "ai_processing") == {} and queued(redis_client, "publishing") == {}


@pytest.mark.parametrize(("name", "found"), [
    ("cars_bot.tasks.ai_tasks.process_post_task", {"post_id": 42, "status": "missing", "reason": "no such post"}),
    ("cars_bot.tasks.publishing_tasks.publish_post_task",
     {"status": "not_ready", "post_id": 42, "post_status": "missing"}),
])
def test_a_task_that_found_its_post_missing_is_a_failure(celery_app_real, redis_client, settings, name,
                                                         found) -> None:
    """The post vanished between sending and running: the task "succeeds" with nothing done; --wait and
    result say so and exit 1."""
    task_id = str(uuid.uuid4())
    celery_app_real.backend.store_result(task_id, found, "SUCCESS", request=_Request(task_id, name))
    for args in (("task", "result", task_id), ("task", "result", task_id, "--wait")):
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        assert result.stderr.count("\n") == 1 and "post 42 does not exist; nothing was done" in result.stderr
    as_json = invoke("task", "result", task_id, "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["result"] == found


class _Request:
    """The parts of a task request the result backend stores with `result_extended`."""

    def __init__(self, task_id: str, name: str) -> None:
        self.id, self.task, self.args, self.kwargs = task_id, name, [42], {}
        self.hostname, self.retries, self.delivery_info = "ai@host", 0, {"routing_key": "ai_processing"}
        self.ignore_result, self.group, self.group_index, self.parent_id, self.root_id = False, None, None, None, None


def test_revoking_an_id_no_one_holds_says_so(celery_app_real, redis_client, settings) -> None:
    unknown = str(uuid.uuid4())
    result = invoke("task", "revoke", unknown)
    assert result.exit_code == 0
    assert "not queued, not running; 0 worker(s) will drop it if it arrives" in result.stderr
    assert "acknowledged" not in result.stderr
    assert json.loads(invoke("task", "revoke", unknown, "--json").stdout)["outcome"] == "not_found"


def test_revoking_a_finished_task_says_nothing_was_stopped(celery_app_real, redis_client, settings) -> None:
    task_id = str(uuid.uuid4())
    celery_app_real.backend.store_result(task_id, {"ok": True}, "SUCCESS",
                                         request=_Request(task_id, "cars_bot.tasks.ai_tasks.process_post_task"))
    result = invoke("task", "revoke", task_id)
    assert result.exit_code == 0 and "it had already finished (SUCCESS): nothing to stop" in result.stderr


@pytest.mark.slow
def test_wait_prints_the_result(celery_app_real, redis_client, db, settings, tmp_path) -> None:
    with celery_worker(celery_app_real, queues="monitoring", log=tmp_path / "worker.log"):
        result = invoke("task", "run", "cleanup-old-results", "--kwarg", "days_old=3", "--wait", "--timeout", "30")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["days_old"] == 3 and "SUCCESS" in result.stderr
        task_id = json.loads(invoke("task", "run", "cleanup-old-results", "--json").stdout)["id"]
        shown = invoke("task", "result", task_id, "--wait", "--timeout", "30", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["state"] == "SUCCESS"


ORIGINAL_ID = "0a1b2c3d-0000-4000-8000-000000000001"


def test_failed_tasks_are_listed_and_retried_with_their_arguments(celery_app_real, redis_client, db,
                                                                  settings) -> None:
    from cars_bot.db.models import FailedTask, FailedTaskStatus

    with db() as session:
        record = FailedTask(task_id=ORIGINAL_ID, task_name="cars_bot.tasks.ai_tasks.process_post_task",
                            args=[42], kwargs={}, queue="ai_processing", exception="TimeoutError: [red]x[/red]")
        session.add(record)
        session.commit()
        record_id = record.id
    listed = invoke("task", "failed", "--json")
    assert [row["task_id"] for row in json.loads(listed.stdout)] == [ORIGINAL_ID]
    assert "[red]x[/red]" in invoke("task", "failed").stdout  # exception text shown as data

    result = invoke("task", "retry", str(record_id), "--json")
    assert result.exit_code == 0, result.output
    [retried] = json.loads(result.stdout)
    [message] = [m for messages in queued(redis_client, "ai_processing").values() for m in messages]
    assert message["args"] == [42] and message["headers"]["id"] == retried["retry_task_id"]
    with db() as session:
        stored = session.get(FailedTask, record_id)
        assert stored.status == FailedTaskStatus.RETRIED and stored.retry_task_id == retried["retry_task_id"]
        assert stored.retried_at is not None
    again = invoke("task", "retry", ORIGINAL_ID)
    assert again.exit_code == 1 and "already retried" in again.stderr
    assert invoke("task", "failed", "--json").stdout.strip() == "[]"


def test_retry_all_needs_yes_without_a_terminal(celery_app_real, redis_client, db, settings) -> None:
    from cars_bot.db.models import FailedTask

    with db() as session:
        session.add_all([FailedTask(task_id=f"t{n}", task_name="cars_bot.tasks.ai_tasks.process_post_task",
                                    args=[n], kwargs={}, queue="ai_processing", exception="E") for n in range(3)])
        session.commit()
    refused = invoke("task", "retry", "--all")
    assert refused.exit_code == 2 and "without --yes" in refused.stderr
    done = invoke("task", "retry", "--all", "--yes")
    assert done.exit_code == 0 and "Retried 3 failed task(s)" in done.stderr
    assert sorted(m["args"][0] for m in all_messages(redis_client)) == [0, 1, 2]


def test_an_unreachable_registry_is_exit_69(settings) -> None:
    result = invoke("task", "failed", env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.exit_code == 69 and "database:" in result.stderr and "carsctl db upgrade" in result.stderr


def test_task_list_shows_aliases_queues_and_schedules(settings) -> None:
    result = invoke("task", "list", "--json")
    assert result.exit_code == 0
    rows = {row["alias"]: row for row in json.loads(result.stdout)}
    assert rows["process-post"]["queue"] == "ai_processing" and rows["process-post"]["priority"] in range(10)
    assert rows["process-post"]["signature"] == "(post_id: int)"
    assert rows["collect-stats"]["periodic"] == ["every 900s"]
    assert rows["sync-channels"]["queue"] == "sheets_sync" and rows["sync-channels"]["time_limit"] == 60


@pytest.mark.parametrize("command", ["result", "revoke", "retry"])
@pytest.mark.parametrize("garbage", ["a", "", " ", "x" * 100_000, "1f0c6a2e-3b4d", "../../etc/passwd", "²"])
def test_a_string_that_cannot_be_a_task_id_is_a_usage_error(command, garbage) -> None:
    """`task result a` reported PENDING (exit 0) and `task result ''` said the broker was down (exit 69):
    nothing is asked of the broker for a string Celery could never have made an id of."""
    result = invoke("task", command, garbage)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("carsctl: error: ") and "is not a task id" in result.stderr
    assert result.stderr.count("\n") == 1 and len(result.stderr) < 300


def test_registry_ids_are_bounded() -> None:
    result = invoke("task", "retry", "99999999999999999999")
    assert result.exit_code == 2 and "registry ids go from 1 to 2147483647" in result.stderr


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00", b"caf\xe9 1\n", b"1\n\x00\n"])
def test_a_binary_or_latin1_from_file_is_a_usage_error(celery_app_real, settings, tmp_path, content) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(content)
    result = invoke("task", "run", "process-post", "--from-file", str(path))
    assert result.exit_code == 2, result.output
    assert str(path) in result.stderr and ("not UTF-8 text" in result.stderr or "binary file" in result.stderr)


@pytest.mark.parametrize(("found", "terminate", "said"), [
    ({"state": "PENDING", "location": "active on ai@host", "worker": "ai@host"}, False,
     "active on ai@host: a run already started finishes (--terminate stops it)"),
    ({"state": "PENDING", "location": "active on ai@host", "worker": "ai@host"}, True,
     "active on ai@host: terminated (SIGTERM)"),
    ({"state": "STARTED", "worker": "ai@host"}, True, "STARTED on ai@host: terminated (SIGTERM)"),
    ({"state": "PENDING", "location": "delivered to a worker, not yet acknowledged"}, False,
     "delivered to a worker, not yet acknowledged; 0 worker(s) will drop it"),
])
def test_revoking_a_task_a_worker_holds_says_what_becomes_of_it(celery_app_real, redis_client, settings, monkeypatch,
                                                               found, terminate, said) -> None:
    from carsctl.dispatch import task_results

    task_id = str(uuid.uuid4())
    info = task_results.TaskInfo(id=task_id, known=True, **found)
    monkeypatch.setattr(task_results, "result_info", lambda *_args, **_kwargs: info)
    result = invoke("task", "revoke", task_id, *(["--terminate"] if terminate else []))
    assert result.exit_code == 0 and f"revoked {task_id}: {said}" in result.stderr, result.stderr
