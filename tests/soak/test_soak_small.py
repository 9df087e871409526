"""The fault-injection soak at a small size (make soak runs 5,000 recipients and 1,000 opt-outs).

It runs on the real local stack: every function in environments of its own, faults injected by a
proxy between the functions and moto, one sender environment killed with SIGKILL mid-invocation.
"""

from __future__ import annotations

from optout_local.soak import run


def test_invariants_hold_under_injected_faults() -> None:
    # A higher fault rate than the full soak, so a small run still meets faults everywhere it calls
    result = run(recipients=200, opt_outs=40, rate=0.1, echo=lambda line: None)
    assert result["faults_total"] > 10 and result["listed_twice"] == 4
    assert result["opt_outs_acknowledged"] + sum(result["opt_outs_refused"].values()) == 40
    assert result["environment_killed"] is not None  # a sender environment died mid-invocation
    # One in four recipients has a phone: the notice's texts went through SNS and its faults too
    assert result["texts_sent"] > 20 and any(k.startswith("sns:Publish") for k in result["faults_by_operation"])
    assert result["invariants"] == {
        "acknowledged_opt_outs_not_stored": 0,
        "recipients_without_exactly_one_final_decision": 0,
        "early_opt_outs_sent_anyway": 0,
        "sent_twice": 0,
        "duplicates_not_counted_once": 0,
        "notice_final": True,
        "unknown_beyond_calls_hit_by_a_fault": 0,
        "sent_records_without_their_message": 0,
        "messages_without_a_record": 0,
    }, (
        f"{result['sent_twice_after_a_lost_send']} of the addresses sent twice had a SendEmail whose answer was "
        f"lost (applied by SES, then the connection dropped); logs: {result.get('function_logs')}"
    )
