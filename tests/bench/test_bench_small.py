"""The benchmark at a small size, so it cannot rot; its deterministic bars are asserted here.

Every part runs on the local Lambda runtime (each function in environments of its own), but the
quota run, whose sender runs in the test's process (``quota_run`` says why). Timings are reported
by `make bench`, not asserted: a timed test on a shared machine is noise. The one exception is
the quota run's bar at its cheapest point (20 ms a call, 500 recipients/s): at its share of that
quota an instance has 1.2 s for each invocation of 100 recipients and needs a fraction of it,
so a busy machine does not fail it.
"""

from __future__ import annotations

import pytest

from optout_local.bench import (
    cold_start,
    cost_per_million,
    erasure_time,
    notice_throughput,
    optout_latency,
    quota_run,
    shared_quota_run,
    sustained,
)


def test_notice_pipeline_meets_the_call_bars_at_a_small_size() -> None:
    result = notice_throughput(200)
    assert result["status"] == "complete"
    assert result["counts"]["recipients"] == {"sent": 180, "unreachable": 20}
    # Counted from what moto received, not inside the functions: one SendBulkEmail per batch of up
    # to 50 (180 mailed in 4 batches), no SendEmail ...
    assert result["aws_calls"]["sesv2:SendBulkEmail"] == 4 and "sesv2:SendEmail" not in result["aws_calls"]
    # ... at most 0.2 AWS calls per recipient in all at this size (the fixed costs of a notice
    # weigh on 200 recipients; make bench measures 10,000 against the bar of 0.1) ...
    assert result["aws_calls_per_recipient"] <= 0.2
    # ... and at most one suppression read per 100 recipients
    assert result["suppression_reads_per_100"] <= 1.0
    # Each delivery record is written once, in its batch's transaction (2 units), beside one mark
    # and one counts update per batch: about 2.1 write units a recipient, never the old 3
    units = sum(result["dynamodb_write_units"].values()) / 200
    assert 2.0 <= units <= 2.3, result["dynamodb_write_units"]
    # The floor replayed exactly the calls the pipeline made, in an environment of its own
    assert result["bare_ses_calls"] == 4 and result["bare_ses_recipients"] == 180
    assert result["ratio_of_each_run"] == [result["ratio_to_bare_ses"]]
    assert result["bare_ses_calls_received"] == {"sesv2:SendBulkEmail": 4}
    assert result["function_invocations"]["sender"] == 2  # two 50-recipient batches an invocation
    cost = cost_per_million(result)
    assert 0 < cost["pipeline_total_usd_per_million"] < cost["ses_usd_per_million"]


def test_cold_start_is_measured_for_every_function_on_its_sample_event() -> None:
    starts = cold_start(repeats=1, warm=2)
    assert set(starts) == {"admin_api", "dispatcher", "feedback", "sender", "sms_inbound", "sms_webhook", "unsubscribe"}
    for name, r in starts.items():
        assert r["first_invocation_ms"] > r["init_ms"] > 0 and r["bare_first_invocation_ms"] > 0, name
        assert r["warm_p50_ms"] > 0, name
        # The SDK floor built the clients of the services the first call used (every function calls DynamoDB)
        assert "dynamodb" in r["services"] and r["sdk_floor_first_invocation_ms"] > 0, name
        # Each sample event took the function's real path, not an error page or a failed batch
        assert r["first_call"] in ("HTTP 200", "0 batch item failures"), (name, r["first_call"])


def test_opt_out_latency_reports_first_requests_apart_from_the_steady_state() -> None:
    result = optout_latency(clients=4, per_client=6)
    assert result["errors"] == {} and result["requests"] == 24
    for kind in ("one_click", "twilio"):
        assert result[f"{kind}_first_requests"]["n"] == 4 and result[kind]["n"] == 8
    # Where the time went, for the same requests the clients timed
    profile = result["profile"]["SmsWebhookFunction"]
    assert profile["cold_starts"] >= 1 and profile["requests"] > 0
    assert profile["aws_calls_per_request"] and all(v is not None for v in profile["mean_breakdown_ms"].values())


def test_the_sender_sustains_the_ses_quota_beside_one_sendemail_a_recipient() -> None:
    # The cheapest point of the quota run's grid: 20 ms a call, 500 recipients/s
    result = quota_run(latencies_ms=(20,), quotas=(500,), seconds=4.0, old_seconds=2.0)
    point = result["points"][0]
    bulk, old = point["bulk"], point["one_by_one"]
    instances = point["instances"]

    # Every recipient went out, each instance at its share of the quota it read (GetAccount, auto)
    assert bulk["errors"] == [] and bulk["results"] == {
        "sent": point["recipients"],
        "batches": point["recipients"] // 50,
    }
    assert bulk["recipients_taken"] == point["recipients"]  # counted by the SES, not by the sender
    assert bulk["pace_per_instance"] == round(500 / instances, 2)
    # ... in calls of 50, never throttled. The bar (95% of the quota or more) is a timing: it is
    # measured in make bench's quota run on a quiet machine, not asserted here, where make test's
    # other work shares the two cores
    assert bulk["recipients_per_call"] == 50.0
    assert bulk["throttled_calls"] == 0 and bulk["throttles_heard"] == 0
    # Side by side: one SendEmail a recipient, one after another in as many instances, is bound by
    # the latency (at most instances / 20 ms), far under the quota
    assert old["recipients_per_call"] == 1.0 and old["throttled_calls"] == 0
    assert old["sustained_per_second"] <= instances / 0.020
    assert old["of_quota"] < bulk["of_quota"]


def test_the_sustained_rate_leaves_out_the_start_and_the_end() -> None:
    # Two instances in step, 50 recipients each every 0.5 s (200/s), after a burst at the start
    # and before a slow tail: the window spans whole rounds, so the rate is the pace's exactly
    calls = [(0.0, 50), (0.01, 50), (0.02, 50)]  # the start's burst
    calls += [(1.0 + k * 0.5 + d, 50) for k in range(20) for d in (0.0, 0.004)]
    calls += [(12.0, 50), (14.0, 50)]  # the tail
    assert sustained(calls, instances=2) == pytest.approx(200, rel=0.01)
    assert sustained(calls[:3], instances=2) is None  # too few calls to tell


def test_a_throttling_answer_slows_the_whole_pace() -> None:
    # GetAccount answers 500/s, but SES throttles above 250/s: another sender shares the account
    result = shared_quota_run(latency_ms=20, quota=500, share=0.5, rounds=4)
    bulk = result["bulk"]

    # SES throttled calls, and each throttle reached the pace of the instance it answered
    assert bulk["errors"] == []
    assert bulk["throttled_calls"] > 0 and bulk["throttles_heard"] == bulk["throttled_calls"]
    # Throttled calls were refused, so tried again (never lost, never twice): what SES took is what
    # the sender recorded sent, and the rest waits in the queue, deferred
    results = bulk["results"]
    assert bulk["recipients_taken"] == results.get("sent", 0)
    assert results.get("sent", 0) + results.get("deferred", 0) == result["recipients"]
    assert set(results) <= {"sent", "deferred", "batches"}
    # The instances slowed down to what SES takes, never held above it (of the 250/s allowed); how
    # close under it they settle is a timing, measured by make bench
    assert 0 < bulk["of_quota"] <= 1.2, bulk


def test_erasure_is_measured_and_removes_every_record_at_a_small_size() -> None:
    result = erasure_time(120, manifest_rows=50, runs=1)
    assert result["removed"] == {
        "deliveries_pseudonymised": 120, "manifests_rewritten": 1, "manifest_rows_blanked": 1, "manifests_too_large": 0,
    }  # fmt: skip
    assert result["seconds"] > 0 and result["ms_per_delivery"] > 0
    # the records are read from the by_address index a page of 100 at a time (2 queries, and 1 for the
    # consent history in the answer) and moved in batches of 25 (a put of the copy, then a delete of
    # the original): about 0.1 AWS calls a record
    assert result["aws_calls"]["dynamodb:Query"] == 3 and result["aws_calls"]["dynamodb:BatchWriteItem"] == 10
