"""The benchmark at a small size, so it cannot rot; its deterministic bars are asserted here.

Every part runs on the local Lambda runtime (each function in environments of its own). Timings
are reported by `make bench`, not asserted: a timed test on a shared machine is noise.
"""

from __future__ import annotations

from optout_local.bench import cold_start, cost_per_million, notice_throughput, optout_latency


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
