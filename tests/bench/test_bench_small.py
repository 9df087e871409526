"""The benchmark at a small size, so it cannot rot; its deterministic bars are asserted here.

Timings are reported by `make bench`, not asserted: a timed test on a shared machine is noise.
"""

from __future__ import annotations

from optout_local.bench import cold_start, cost_per_million, notice_throughput


def test_notice_pipeline_meets_the_call_bars_at_a_small_size() -> None:
    result = notice_throughput(200)
    assert result["status"] == "complete"
    assert result["counts"]["recipients"] == {"sent": 180, "unreachable": 20}
    # DESIGN §7: at most 1.1 AWS calls per recipient (one SES call each is the floor) ...
    assert result["aws_calls"]["sesv2:SendEmail"] == 180
    assert result["aws_calls_per_recipient"] <= 1.1
    # ... and at most one suppression read per 100 recipients
    assert result["suppression_reads_per_100"] <= 1.0
    # Each delivery record is written once, in its batch's transaction (2 units), beside one mark
    # and one counts update per batch: about 2.1 write units a recipient, never the old 3
    units = sum(result["dynamodb_write_units"].values()) / 200
    assert 2.0 <= units <= 2.3, result["dynamodb_write_units"]
    # The floor replayed exactly the mails the pipeline sent
    assert result["bare_ses_calls"] == 180 and result["ratio_of_each_run"] == [result["ratio_to_bare_ses"]]
    cost = cost_per_million(result)
    assert 0 < cost["pipeline_total_usd_per_million"] < cost["ses_usd_per_million"]


def test_cold_start_is_measured_for_every_function() -> None:
    starts = cold_start(repeats=1)
    assert set(starts) == {"admin_api", "dispatcher", "feedback", "sender", "sms_inbound", "sms_webhook", "unsubscribe"}
    assert all(r["import_ms"] > 0 and r["boto3_ms"] > 0 for r in starts.values())
